"""Evolink's credit balance above the image task changelist.

Asked once per call, without retries and with short time-outs, and read by
:func:`django_evolink.core.credits.parse_credits` (as the ``evolink_credits`` command
reads it), so a down Evolink never breaks or slows the page much.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils.translation import gettext

from .. import conf
from ..core.credits import format_credits, parse_credits
from ..evolink.client import EvolinkClient
from ..exceptions import EvolinkError
from .display import safe_text

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
    balance = parse_credits(answer)
    if balance is None:
        return {"ok": False, "error": gettext("Evolink's answer has no credit data.")}
    return {
        "ok": True,
        "user_remaining": format_credits(balance.remaining) or None,
        "user_used": format_credits(balance.used) or None,
        "token_remaining": format_credits(balance.key_remaining) or None,
        "token_used": format_credits(balance.key_used) or None,
        "unlimited": balance.key_unlimited,
    }
