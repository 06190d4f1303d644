"""Evolink's credit balance above the image task changelist.

Asked once per call, without retries and with short time-outs, so a down Evolink never
breaks or slows the page much.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext

from .. import conf
from ..evolink.client import EvolinkClient
from ..exceptions import EvolinkError
from .display import format_credits, safe_text

logger = logging.getLogger("django_evolink.admin")


def fetch_credit_balance(timeout: float = 5.0) -> dict[str, Any]:
    """Ask Evolink for the credit balance once (no retries, short time-outs).

    Returns ``{"ok": True, "user_remaining": ..., "user_used": ..., "token_remaining":
    ..., "token_used": ..., "unlimited": ...}`` (amounts as text, None when Evolink gave
    none) or ``{"ok": False, "error": <text, key redacted>}``.
    """
    try:
        client = EvolinkClient(
            connect_timeout=min(timeout, float(conf.get("CONNECT_TIMEOUT"))),
            read_timeout=min(timeout, float(conf.get("READ_TIMEOUT"))),
            max_retries=0,
        )
        try:
            answer = client.get_credits()
        finally:
            client.close()
    except EvolinkError as exc:
        return {"ok": False, "error": safe_text(exc)}
    except Exception as exc:  # never break the changelist
        logger.warning("admin: reading the Evolink credit balance failed", exc_info=True)
        return {"ok": False, "error": safe_text(type(exc).__name__)}
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        return {"ok": False, "error": gettext("Evolink's answer has no credit data.")}
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    token = data.get("token") if isinstance(data.get("token"), dict) else {}

    def number(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None
        try:
            return format_credits(Decimal(str(value)))
        except Exception:
            return None

    return {
        "ok": True,
        "user_remaining": number(user.get("remaining_credits")),
        "user_used": number(user.get("used_credits")),
        "token_remaining": number(token.get("remaining_credits")),
        "token_used": number(token.get("used_credits")),
        "unlimited": token.get("unlimited_credits") is True,
    }
