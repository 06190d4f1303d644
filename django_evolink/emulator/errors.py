"""Evolink's error answer (:class:`ApiError`), raised by every part that refuses a request."""

from __future__ import annotations

from typing import Any

from .faults import ERROR_TYPES, SUGGESTIONS

#: Where a 402 answer sends the user (``fallback_suggestion``).
BILLING_URL = "https://evolink.ai/dashboard/billing"


def default_suggestion(status: int) -> str | None:
    """The ``fallback_suggestion`` Evolink gives with ``status`` (None: none)."""
    return BILLING_URL if status == 402 else SUGGESTIONS.get(status)


class ApiError(Exception):
    """An Evolink error answer: ``{"error": {code, message, type, param?, ...}}``.

    ``fallback_suggestion`` defaults to the status's hint (:func:`default_suggestion`).
    """

    def __init__(self, status: int, message: str, param: str | None = None,
                 fallback_suggestion: str | None = None, retry_after: float | None = None,
                 error_type: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.fallback_suggestion = (default_suggestion(status) if fallback_suggestion is None
                                    else fallback_suggestion)
        self.retry_after = retry_after
        self.error_type = error_type or ERROR_TYPES.get(status, ("internal_server_error", ""))[0]

    def body(self) -> dict[str, Any]:
        """The JSON body, exactly as section 6 of evolink-api.md."""
        error: dict[str, Any] = {"code": self.status, "message": self.message,
                                 "type": self.error_type}
        if self.param is not None:
            error["param"] = self.param
        if self.fallback_suggestion is not None:
            error["fallback_suggestion"] = self.fallback_suggestion
        return {"error": error}

    def files_body(self) -> dict[str, Any]:
        """The files API's error envelope: ``{"success": false, "code", "msg"}`` (the
        envelope of its success answer, evolink-api.md §5; the emulator's guess, the docs
        show no error body of the files API)."""
        body: dict[str, Any] = {"success": False, "code": self.status, "msg": self.message}
        if self.param is not None:
            body["param"] = self.param
        return body
