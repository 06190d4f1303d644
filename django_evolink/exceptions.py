"""Errors raised by django-evolink.

:class:`EvolinkError` is the base of everything; :class:`EvolinkAPIError` and its
subclasses (one per Evolink error ``type``) carry what Evolink answered. The API key
never appears in any message: messages are built only from Evolink's answer and our
own text, and :func:`redact` scrubs anything that looks like a key.
"""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from django.core.exceptions import ImproperlyConfigured

_KEY_PATTERN = re.compile(r"(sk-evo-)[A-Za-z0-9_\-]+|(Bearer\s+)[^\s\"']+", re.IGNORECASE)


def redact(text: str, secret: str | None = None) -> str:
    """Remove API keys and bearer tokens (and ``secret`` itself) from ``text``."""
    if not text:
        return text
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", text)


class EvolinkError(Exception):
    """Base class of every django-evolink error."""

    #: Stable code stored on a failed task (``ImageTask.error_code``).
    code: str = "evolink_error"
    #: The :class:`~django_evolink.models.ImageTask` kept as ``failed`` when this error
    #: refused a submission (``services.create_task`` / ``submit_task``); else ``None``.
    #: Typed Any, not ImageTask: this module sits below the models and imports none.
    task: Any = None

    def __init__(self, message: str = "") -> None:
        self.message = redact(str(message))
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class EvolinkConfigurationError(EvolinkError, ImproperlyConfigured):
    """django-evolink is not set up correctly (missing key, bad setting)."""

    code = "configuration_error"

    @classmethod
    def missing_api_key(cls) -> EvolinkConfigurationError:
        """The one error for "no API key", naming every way to set one."""
        return cls(
            "No Evolink API key: set EVOLINK = {'API_KEY': ...} in your Django settings or "
            "the EVOLINK_API_KEY environment variable (or pass EvolinkClient(api_key=...))."
        )


class EvolinkValidationError(EvolinkError):
    """Input refused locally, before anything was sent to Evolink.

    ``errors`` maps a field name to a list of messages saying what is allowed.
    """

    code = "validation_error"

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = {k: [str(m) for m in v] for k, v in errors.items()}
        text = "; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items())
        super().__init__(text)


class EvolinkLimitExceededError(EvolinkError):
    """A create refused locally because it would pass a spending limit
    (``EVOLINK['LIMITS']`` or the ``LIMITS_POLICY``); nothing was saved or sent.

    ``limit`` is the limit's name (``ACTIVE_TASKS_PER_USER``, ``CREDITS_PER_USER_PER_DAY``
    or ``CREDITS_PER_DAY``), ``allowed`` its value, ``used`` what is taken now,
    ``requested`` what the create needed (1 task, or its estimated credits),
    ``remaining`` what is left, and ``retry_after`` the seconds until enough frees up by
    time (``None`` when time alone does not free it: unfinished tasks, or a create
    costing more than the whole limit). The message says all this to a person.
    """

    code = "limit_exceeded"

    def __init__(self, message: str, *, limit: str, allowed: Any, used: Any,
                 requested: Any, remaining: Any, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.allowed = allowed
        self.used = used
        self.requested = requested
        self.remaining = remaining
        self.retry_after = retry_after


class EvolinkTransportError(EvolinkError):
    """The request did not get an HTTP answer from Evolink."""

    code = "network_error"


class EvolinkConnectionError(EvolinkTransportError):
    """Evolink could not be reached (DNS, refused connection, connect timeout).

    Nothing reached Evolink, so the request was certainly not processed.
    """

    code = "connection_error"


class EvolinkTimeoutError(EvolinkTransportError):
    """Evolink accepted the connection but did not answer in time."""

    code = "timeout"


class EvolinkOutcomeUnknownError(EvolinkTransportError):
    """A create request was sent but its answer was lost (read timeout, reset).

    Evolink may or may not have created (and billed) a task. It is never resent
    automatically: an operator decides.
    """

    code = "outcome_unknown"


class EvolinkAPIError(EvolinkError):
    """Evolink answered with an error.

    Carries ``status`` (HTTP), ``type`` (Evolink's error type), ``message``,
    ``param``, ``fallback_suggestion``, ``retry_after`` (seconds, when given) and the
    parsed ``body``.
    """

    #: Evolink's error ``type`` this class stands for.
    error_type: str = ""
    status_code: int | None = None
    code = "api_error"

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
        fallback_suggestion: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        self.status = status if status is not None else self.status_code
        self.type = type or self.error_type
        self.param = param
        self.fallback_suggestion = fallback_suggestion
        self.retry_after = retry_after
        self.body = body
        super().__init__(message or f"Evolink answered HTTP {self.status}")
        # the code stored on a task is Evolink's own error type when it gave one
        self.code = self.type or self.code

    def __str__(self) -> str:
        parts = [f"Evolink {self.type or 'error'} (HTTP {self.status}): {self.message}"]
        if self.param:
            parts.append(f"param={self.param}")
        if self.fallback_suggestion:
            parts.append(f"suggestion: {self.fallback_suggestion}")
        return redact(" ".join(parts))

    @property
    def retryable(self) -> bool:
        return self.status in (429, 500, 502, 503, 504)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "type": self.type,
            "message": self.message,
            "param": self.param,
            "fallback_suggestion": self.fallback_suggestion,
        }


class EvolinkInvalidRequestError(EvolinkAPIError):
    """400 ``invalid_request_error``: bad parameters."""

    error_type = "invalid_request_error"
    status_code = 400


class EvolinkAuthenticationError(EvolinkAPIError):
    """401 ``authentication_error``: key missing, invalid or expired."""

    error_type = "authentication_error"
    status_code = 401


class EvolinkInsufficientQuotaError(EvolinkAPIError):
    """402 ``insufficient_quota_error``: out of credits."""

    error_type = "insufficient_quota_error"
    status_code = 402


class EvolinkPermissionError(EvolinkAPIError):
    """403 ``permission_error``: the key has no access (e.g. to this model)."""

    error_type = "permission_error"
    status_code = 403


class EvolinkNotFoundError(EvolinkAPIError):
    """404 ``not_found_error``: unknown model, or task not found / expired."""

    error_type = "not_found_error"
    status_code = 404


class EvolinkRequestTooLargeError(EvolinkAPIError):
    """413 ``request_too_large_error``: the request or one of its inputs is too large
    (``param`` names which)."""

    error_type = "request_too_large_error"
    status_code = 413


class EvolinkRateLimitError(EvolinkAPIError):
    """429 ``rate_limit_error``: rate limited; ``retry_after`` says for how long."""

    error_type = "rate_limit_error"
    status_code = 429


class EvolinkInternalServerError(EvolinkAPIError):
    """500 ``internal_server_error``."""

    error_type = "internal_server_error"
    status_code = 500


class EvolinkUpstreamError(EvolinkAPIError):
    """502 ``upstream_error``: the model provider behind Evolink failed."""

    error_type = "upstream_error"
    status_code = 502


class EvolinkServiceUnavailableError(EvolinkAPIError):
    """503 ``service_unavailable_error``: temporarily unavailable."""

    error_type = "service_unavailable_error"
    status_code = 503


class EvolinkMalformedResponseError(EvolinkAPIError):
    """Evolink answered something that is not the JSON we expect."""

    error_type = "malformed_response"
    code = "malformed_response"


API_ERROR_CLASSES: tuple[type[EvolinkAPIError], ...] = (
    EvolinkInvalidRequestError,
    EvolinkAuthenticationError,
    EvolinkInsufficientQuotaError,
    EvolinkPermissionError,
    EvolinkNotFoundError,
    EvolinkRequestTooLargeError,
    EvolinkRateLimitError,
    EvolinkInternalServerError,
    EvolinkUpstreamError,
    EvolinkServiceUnavailableError,
)
_BY_TYPE = {c.error_type: c for c in API_ERROR_CLASSES}
_BY_STATUS = {c.status_code: c for c in API_ERROR_CLASSES}


def error_class_for(status: int, error_type: str | None) -> type[EvolinkAPIError]:
    """The exception class for an error answer: by Evolink ``type``, else by status."""
    if error_type and error_type in _BY_TYPE:
        return _BY_TYPE[error_type]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return EvolinkInternalServerError
    return EvolinkAPIError


def is_unknown_task(exc: BaseException) -> TypeGuard[EvolinkAPIError]:
    """True when a task query's error means Evolink does not know the task and never will:
    404 (unknown or expired) or 400 on ``param: task_id`` (a malformed id)."""
    if isinstance(exc, EvolinkNotFoundError):
        return True
    return isinstance(exc, EvolinkInvalidRequestError) and exc.param == "task_id"
