"""Evolink's credits answer (``GET /v1/credits``) as the figures people are shown.

One reading for every place that shows the balance (the admin changelist, the
``evolink_credits`` command): the balance is the *account's* (``data.user``), the API
key's own figures (``data.token``) come second, and a key is unlimited only when
Evolink says ``unlimited_credits: true``. Amounts are shown normalised (``1.2000`` ->
``1.2``). No database access.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


@dataclass(frozen=True)
class CreditBalance:
    """The figures of one credits answer; an amount is None when Evolink did not give one.

    ``remaining``/``used`` are the account's (``data.user``); ``key_remaining``,
    ``key_used`` and ``key_unlimited`` the API key's (``data.token``).
    """

    remaining: Decimal | None
    used: Decimal | None
    key_remaining: Decimal | None
    key_used: Decimal | None
    key_unlimited: bool


def format_credits(value: Decimal | None) -> str:
    """``1.2000`` -> ``"1.2"``; ``None`` -> ``""``."""
    if value is None:
        return ""
    return format(Decimal(value).normalize(), "f")


def _amount(value: Any) -> Decimal | None:
    """A finite number given as JSON number or text, else None (booleans are not amounts)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def parse_credits(answer: Any) -> CreditBalance | None:
    """The figures of a ``GET /v1/credits`` answer, or None when it has no ``data`` object."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        return None
    user = _object(data.get("user"))
    token = _object(data.get("token"))
    return CreditBalance(
        remaining=_amount(user.get("remaining_credits")),
        used=_amount(user.get("used_credits")),
        key_remaining=_amount(token.get("remaining_credits")),
        key_used=_amount(token.get("used_credits")),
        key_unlimited=token.get("unlimited_credits") is True,
    )
