"""Evolink task objects read as data: no database, no Django models.

:func:`parse_payload` turns a create answer, a task query answer or a callback body into
an :class:`Update` (or raises :class:`PayloadError` saying why it cannot be applied);
:func:`storable` makes any payload safe to store as JSON in every database.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

#: Why a payload cannot be applied (the values of ``EventOutcome`` that name them).
MALFORMED = "malformed"
UNKNOWN_STATUS = "unknown_status"

#: The largest credit amount recorded (what ``ImageTask.credits_reserved``, 14 digits
#: with 4 decimals, holds); a larger one is refused as malformed, never half-stored.
MAX_CREDITS = Decimal("9999999999.9999")

#: Statuses Evolink may report for a task.
EVOLINK_STATUSES = frozenset({"pending", "processing", "completed", "failed", "cancelled"})
#: The statuses in which Evolink reports an error.
ERROR_STATUSES = frozenset({"failed", "cancelled"})


class PayloadError(ValueError):
    """A payload that cannot be applied; ``outcome`` says why."""

    def __init__(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        super().__init__(message)


@dataclass
class Update:
    """What a payload says about a task, normalised."""

    status: str
    evolink_id: str | None = None
    progress: int | None = None
    billing_rule: str | None = None
    credits_reserved: Decimal | None = None
    user_group: str | None = None
    estimated_time: int | None = None
    can_cancel: bool | None = None
    results: list[str] | None = None
    error_code: str | None = None
    error_message: str | None = None


def _int(value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
        or value != int(value)
    ):
        raise PayloadError(MALFORMED, f"{name} must be an integer")
    number = int(value)
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise PayloadError(MALFORMED, f"{name} must be within {lo}..{hi}")
    return number


def _str(value: Any, name: str, max_length: int = 255) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise PayloadError(MALFORMED, f"{name} must be a string")
    return value


def parse_payload(payload: Any) -> Update:
    """Turn an Evolink task object (create answer, task query, callback) into an Update."""
    if not isinstance(payload, dict):
        raise PayloadError(MALFORMED, "the payload is not a JSON object")
    evolink_id = payload.get("id")
    if not isinstance(evolink_id, str) or not evolink_id or len(evolink_id) > 128:
        raise PayloadError(MALFORMED, "the payload has no task id")
    status = payload.get("status")
    if not isinstance(status, str):
        raise PayloadError(MALFORMED, "the payload has no status")
    if status not in EVOLINK_STATUSES:
        raise PayloadError(UNKNOWN_STATUS, f"unknown status {status[:32]!r}")
    update = Update(status=status, evolink_id=evolink_id)
    update.progress = _int(payload.get("progress"), "progress", 0, 100)
    usage = payload.get("usage")
    if usage is not None:
        if not isinstance(usage, dict):
            raise PayloadError(MALFORMED, "usage must be an object")
        update.billing_rule = _str(usage.get("billing_rule"), "usage.billing_rule", 32)
        update.user_group = _str(usage.get("user_group"), "usage.user_group", 64)
        credits = usage.get("credits_reserved")
        if credits is not None:
            if isinstance(credits, bool) or not isinstance(credits, (int, float, str)):
                raise PayloadError(
                    MALFORMED, "usage.credits_reserved must be a number"
                )
            try:
                update.credits_reserved = Decimal(str(credits)).quantize(Decimal("0.0001"))
            except InvalidOperation:
                raise PayloadError(
                    MALFORMED, "usage.credits_reserved must be a number"
                )
            if not update.credits_reserved.is_finite() or update.credits_reserved < 0:
                raise PayloadError(MALFORMED, "usage.credits_reserved must be >= 0")
            if update.credits_reserved > MAX_CREDITS:
                raise PayloadError(MALFORMED, f"usage.credits_reserved must be <= {MAX_CREDITS}")
    info = payload.get("task_info")
    if info is not None:
        if not isinstance(info, dict):
            raise PayloadError(MALFORMED, "task_info must be an object")
        update.estimated_time = _int(info.get("estimated_time"), "estimated_time", 0, 10**7)
        can_cancel = info.get("can_cancel")
        if can_cancel is not None and not isinstance(can_cancel, bool):
            raise PayloadError(MALFORMED, "task_info.can_cancel must be a boolean")
        update.can_cancel = can_cancel
    results = payload.get("results")
    if results is not None:
        if not isinstance(results, list) or len(results) > 16:
            raise PayloadError(MALFORMED, "results must be a list of URLs")
        for url in results:
            if not isinstance(url, str) or len(url) > 2048:
                raise PayloadError(MALFORMED, "results must be a list of URLs")
            if urlsplit(url).scheme not in ("http", "https"):
                raise PayloadError(MALFORMED, "result URLs must be http(s)")
        update.results = list(results)
    if status in ERROR_STATUSES:
        error = payload.get("error")
        if isinstance(error, dict):
            # a failed task's code is a string (content_policy_violation...); an error
            # object shaped like an API error has a numeric code and a type
            code = error.get("code")
            if not isinstance(code, str) or not code:
                code = error.get("type") or code
            update.error_code = str(code or "")[:64] or None
            update.error_message = str(error.get("message") or "")[:2000] or None
        elif isinstance(error, str):
            update.error_message = error[:2000]
    return update


#: What :func:`unstorable_text` reports: a NUL character, a lone surrogate.
NUL = "nul"
SURROGATE = "surrogate"


#: Characters no database stores as text: NUL, and the surrogates (alone, not valid Unicode).
_SURROGATES = re.compile("[\ud800-\udfff]")


def _is_surrogate(ch: str) -> bool:
    return "\ud800" <= ch <= "\udfff"


def unstorable_text(value: Any) -> str | None:
    """:data:`NUL` or :data:`SURROGATE` when a string in ``value`` (dict keys included,
    nested lists and dicts walked to any depth) cannot be stored as text, else ``None``.

    PostgreSQL's text and jsonb refuse NUL; a lone surrogate (U+D800..U+DFFF, which JSON
    can carry as ``"\\ud800"`` and a command line as undecodable bytes) is not valid
    Unicode and cannot be encoded as UTF-8 by any database driver. Client text is checked
    with this before it is saved, so it is refused with a message instead of a 500.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return NUL
            if _SURROGATES.search(item):
                return SURROGATE
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def storable(value: Any, _depth: int = 0) -> Any:
    """``value`` as JSON every database stores: NUL characters and lone surrogates in
    strings become U+FFFD, ``NaN``/``Infinity`` become strings, nesting is capped.

    PostgreSQL's jsonb refuses ``\\u0000`` and ``NaN``; a delivery must still be
    recorded (and then refused as malformed), never lost to a database error.
    """
    if isinstance(value, str):
        if unstorable_text(value):
            value = "".join("\ufffd" if ch == "\x00" or _is_surrogate(ch) else ch
                            for ch in value)
        return value
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if _depth > 64:
        return "[nested too deep]"
    if isinstance(value, dict):
        return {storable(str(k), _depth + 1): storable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v, _depth + 1) for v in value]
    return value
