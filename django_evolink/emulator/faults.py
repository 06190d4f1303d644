"""Fault switches of the emulator.

Endpoints are named: ``create`` (POST /v1/images/generations), ``task``
(GET /v1/tasks/{id}), ``credits`` (GET /v1/credits), ``upload``
(POST /api/v1/files/upload/stream), ``files`` (GET of uploaded files and result images)
and ``*`` (every endpoint). A ``count`` of ``None`` means "until cleared".
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

ENDPOINTS = ("create", "task", "credits", "upload", "files")

#: The ``type`` and default message of each injectable error status (evolink-api.md §6).
#: Hints (when to retry, where to go) are not in the message: see :data:`SUGGESTIONS`.
ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "Invalid API key"),
    402: ("insufficient_quota_error", "Insufficient credits"),
    403: ("permission_error", "You do not have access to this resource"),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large_error", "The request is too large"),
    429: ("rate_limit_error", "Rate limit exceeded"),
    500: ("internal_server_error", "Internal server error"),
    502: ("upstream_error", "The upstream model provider failed"),
    503: ("service_unavailable_error", "Service temporarily unavailable"),
}

#: The ``fallback_suggestion`` of each error status that has one (evolink-api.md §6: the
#: hints travel there, not in ``message``). 402 links to billing (``errors.BILLING_URL``);
#: a 404 for an unknown model suggests a model name (``validation``).
SUGGESTIONS: dict[int, str] = {
    429: "retry after 60 seconds",
    500: "retry after a few seconds; if it persists, try another model",
    502: "retry after a few seconds; if it persists, try another model",
    503: "retry after 30 seconds",
}

#: Evolink's codes of a failed task (evolink-api.md §7) and the emulator's message for
#: each (Evolink's own wording is not published; these say what happened and what to do).
TASK_ERROR_CODES: dict[str, str] = {
    "content_policy_violation": "The prompt or an input image was refused by the content "
                                "policy; change the prompt or the images",
    "invalid_parameters": "The model refused the parameters of the request",
    "image_processing_error": "An input image could not be fetched or processed",
    "image_dimension_mismatch": "The input images do not have the dimensions the model needs",
    "request_cancelled": "The task was cancelled",
    "generation_failed_no_content": "The model returned no image; retry later",
    "service_error": "The generation service failed; retry later",
    "generation_timeout": "The generation took too long and was stopped; retry later",
    "resource_exhausted": "The model has no capacity left right now; retry later",
    "quota_exceeded": "The model's quota is exceeded; retry later",
    "service_unavailable": "The generation service is unavailable; retry later",
    "resource_not_found": "A resource the task needs was not found",
    "unknown_error": "The task failed for an unknown reason",
}
#: The code of a task failed without naming one (``fail_next``, ``fail_rate``, ``/fail``).
DEFAULT_FAIL_CODE = "generation_failed_no_content"
#: The code a cancelled task carries (the emulator's guess: Evolink publishes the code
#: ``request_cancelled`` but no cancelled task body).
CANCELLED_CODE = "request_cancelled"


def check_fail_code(code: str | None) -> str:
    """``code`` if it is one of Evolink's task error codes (None: the default code)."""
    if code is None:
        return DEFAULT_FAIL_CODE
    if code not in TASK_ERROR_CODES:
        raise ValueError(f"unknown task error code {code!r}; one of {sorted(TASK_ERROR_CODES)}")
    return code

LOSE_MODES = ("timeout", "reset", "close")


def _check_endpoint(endpoint: str) -> str:
    if endpoint != "*" and endpoint not in ENDPOINTS:
        raise ValueError(f"unknown endpoint {endpoint!r}; one of {ENDPOINTS + ('*',)}")
    return endpoint


@dataclass
class ScriptedError:
    """An error answered by the next ``count`` requests of ``endpoint``."""

    endpoint: str
    status: int
    count: int | None = 1
    retry_after: float | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "status": self.status,
            "count": self.count,
            "retry_after": self.retry_after,
            "message": self.message,
        }


@dataclass
class ErrorRate:
    """A random error answered by a fraction ``rate`` of the requests of ``endpoint``."""

    rate: float
    status: int = 500
    retry_after: float | None = None


class _Budget:
    """A switch that applies to the next ``count`` occurrences (None: always)."""

    def __init__(self) -> None:
        self.count: int | None = 0
        self.value: Any = None

    def set(self, count: int | None, value: Any = None) -> None:
        self.count, self.value = count, value

    def take(self) -> tuple[bool, Any]:
        if self.count is None:
            return True, self.value
        if self.count > 0:
            self.count -= 1
            return True, self.value
        return False, None

    def active(self) -> bool:
        return self.count is None or self.count > 0


class Faults:
    """All fault switches. Every method is thread-safe and takes effect immediately."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.clear()

    # -- switches ---------------------------------------------------------------------
    def clear(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self.latency: dict[str, float] = {}
            self.errors: list[ScriptedError] = []
            self.error_rates: dict[str, ErrorRate] = {}
            self._lose_create = _Budget()
            self._drop = _Budget()
            self._duplicate = _Budget()
            self._delay = _Budget()
            self._reorder = _Budget()
            self._fail_next = _Budget()
            self._cancel_next = _Budget()

    def set_latency(self, endpoint: str, seconds: float) -> None:
        """Answer every request of ``endpoint`` after ``seconds`` real seconds (0: off)."""
        with self._lock:
            self.latency[_check_endpoint(endpoint)] = float(seconds)

    def add_error(self, endpoint: str, status: int, count: int | None = 1,
                  retry_after: float | None = None, message: str | None = None) -> None:
        """Queue an error: the next ``count`` requests of ``endpoint`` answer ``status``.

        E.g. ``add_error("task", 429, count=2, retry_after=1)``: the next two task queries
        answer 429 ``rate_limit_error`` with ``Retry-After: 1``. Queued errors are used in
        order; the request is not processed (a create makes no task).
        """
        if status not in ERROR_TYPES:
            raise ValueError(f"status must be one of {sorted(ERROR_TYPES)}")
        with self._lock:
            self.errors.append(
                ScriptedError(_check_endpoint(endpoint), int(status), count, retry_after, message)
            )

    def set_error_rate(self, endpoint: str, rate: float, status: int = 500,
                       retry_after: float | None = None) -> None:
        """Answer ``status`` to a random fraction ``rate`` (0..1) of ``endpoint``'s requests."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be in [0, 1]")
        if status not in ERROR_TYPES:
            raise ValueError(f"status must be one of {sorted(ERROR_TYPES)}")
        with self._lock:
            if rate == 0:
                self.error_rates.pop(_check_endpoint(endpoint), None)
            else:
                self.error_rates[_check_endpoint(endpoint)] = ErrorRate(rate, status, retry_after)

    def lose_create_answer(self, count: int | None = 1, mode: str = "timeout",
                           hold: float = 60.0) -> None:
        """Create the task, then never answer the next ``count`` creates.

        ``mode="timeout"``: hold the connection ``hold`` real seconds (past the client's
        read timeout), then close it. ``"reset"``: reset the connection (TCP RST) at once.
        ``"close"``: close it cleanly without an answer.
        """
        if mode not in LOSE_MODES:
            raise ValueError(f"mode must be one of {LOSE_MODES}")
        with self._lock:
            self._lose_create.set(count, (mode, float(hold)))

    def drop_callbacks(self, count: int | None = 1) -> None:
        """Never send the callbacks of the next ``count`` finished tasks."""
        with self._lock:
            self._drop.set(count)

    def duplicate_callbacks(self, times: int = 2, count: int | None = 1) -> None:
        """Deliver the callbacks of the next ``count`` finished tasks ``times`` times."""
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._duplicate.set(count, int(times))

    def delay_callbacks(self, seconds: float, count: int | None = 1) -> None:
        """Send the callbacks of the next ``count`` tasks ``seconds`` emulated seconds late."""
        with self._lock:
            self._delay.set(count, float(seconds))

    def reorder_callbacks(self, count: int | None = 1) -> None:
        """After the final callback of the next ``count`` tasks, send a stale ``processing``."""
        with self._lock:
            self._reorder.set(count)

    def fail_next_tasks(self, count: int | None = 1, message: str | None = None,
                        code: str | None = None) -> None:
        """The next ``count`` tasks created end ``failed`` instead of ``completed``, with
        ``error.code`` ``code`` (one of :data:`TASK_ERROR_CODES`; default
        ``generation_failed_no_content``) and ``error.message`` ``message`` (default: the
        code's own)."""
        code = check_fail_code(code)
        with self._lock:
            self._fail_next.set(count, (code, message))

    def cancel_next_tasks(self, count: int | None = 1) -> None:
        """The next ``count`` tasks created end ``cancelled``."""
        with self._lock:
            self._cancel_next.set(count)

    # -- configuration from JSON (the control API) ---------------------------------------
    def configure(self, spec: dict[str, Any]) -> None:
        """Apply a JSON fault specification (see docs/emulator.md, ``POST /_emulator/faults``).

        Keys: ``latency`` {endpoint: seconds}; ``errors`` [{endpoint, status, count,
        retry_after, message}]; ``error_rates`` {endpoint: {rate, status, retry_after}};
        ``lose_create`` {count, mode, hold}; ``drop_callbacks`` count;
        ``duplicate_callbacks`` {times, count}; ``delay_callbacks`` {seconds, count};
        ``reorder_callbacks`` count; ``fail_next`` count or {count, code, message};
        ``cancel_next`` count; ``clear`` true (clear first).
        """
        unknown = set(spec) - {
            "clear", "latency", "errors", "error_rates", "lose_create", "drop_callbacks",
            "duplicate_callbacks", "delay_callbacks", "reorder_callbacks", "fail_next",
            "cancel_next",
        }
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        if spec.get("clear"):
            self.clear()
        for endpoint, seconds in (spec.get("latency") or {}).items():
            self.set_latency(endpoint, seconds)
        for err in spec.get("errors") or []:
            self.add_error(
                err.get("endpoint", "*"), int(err["status"]), err.get("count", 1),
                err.get("retry_after"), err.get("message"),
            )
        for endpoint, rate in (spec.get("error_rates") or {}).items():
            if isinstance(rate, (int, float)):
                rate = {"rate": rate}
            self.set_error_rate(
                endpoint, float(rate["rate"]), int(rate.get("status", 500)),
                rate.get("retry_after"),
            )
        if "lose_create" in spec:
            lose = spec["lose_create"]
            lose = {"count": lose} if not isinstance(lose, dict) else lose
            self.lose_create_answer(
                lose.get("count", 1), lose.get("mode", "timeout"), lose.get("hold", 60.0)
            )
        if "drop_callbacks" in spec:
            self.drop_callbacks(spec["drop_callbacks"])
        if "duplicate_callbacks" in spec:
            dup = spec["duplicate_callbacks"]
            dup = {"times": dup} if not isinstance(dup, dict) else dup
            self.duplicate_callbacks(dup.get("times", 2), dup.get("count", 1))
        if "delay_callbacks" in spec:
            delay = spec["delay_callbacks"]
            delay = {"seconds": delay} if not isinstance(delay, dict) else delay
            self.delay_callbacks(delay["seconds"], delay.get("count", 1))
        if "reorder_callbacks" in spec:
            self.reorder_callbacks(spec["reorder_callbacks"])
        if "fail_next" in spec:
            fail = spec["fail_next"]
            fail = {"count": fail} if not isinstance(fail, dict) else fail
            self.fail_next_tasks(fail.get("count", 1), fail.get("message"), fail.get("code"))
        if "cancel_next" in spec:
            self.cancel_next_tasks(spec["cancel_next"])

    def as_dict(self) -> dict[str, Any]:
        """The current switches, JSON-serialisable."""
        with self._lock:
            return {
                "latency": dict(self.latency),
                "errors": [e.as_dict() for e in self.errors],
                "error_rates": {
                    k: {"rate": v.rate, "status": v.status, "retry_after": v.retry_after}
                    for k, v in self.error_rates.items()
                },
                "lose_create": self._budget_dict(self._lose_create),
                "drop_callbacks": self._budget_dict(self._drop),
                "duplicate_callbacks": self._budget_dict(self._duplicate),
                "delay_callbacks": self._budget_dict(self._delay),
                "reorder_callbacks": self._budget_dict(self._reorder),
                "fail_next": self._budget_dict(self._fail_next),
                "cancel_next": self._budget_dict(self._cancel_next),
            }

    @staticmethod
    def _budget_dict(budget: _Budget) -> dict[str, Any] | None:
        if not budget.active():
            return None
        value = budget.value
        if isinstance(value, tuple):
            value = list(value)
        return {"count": budget.count, "value": value}

    # -- consulted by the server ---------------------------------------------------------
    def latency_for(self, endpoint: str) -> float:
        with self._lock:
            return self.latency.get(endpoint, 0.0) + self.latency.get("*", 0.0)

    def error_for(self, endpoint: str) -> ScriptedError | None:
        """The error to answer to this request of ``endpoint``, if any (consumes it)."""
        with self._lock:
            for err in self.errors:
                if err.endpoint in (endpoint, "*"):
                    if err.count is not None:
                        err.count -= 1
                        if err.count <= 0:
                            self.errors.remove(err)
                    return err
            for key in (endpoint, "*"):
                rate = self.error_rates.get(key)
                if rate and self._random.random() < rate.rate:
                    return ScriptedError(key, rate.status, None, rate.retry_after)
        return None

    def chance(self, probability: float) -> bool:
        """True with ``probability`` (seeded random generator)."""
        with self._lock:
            return self._random.random() < probability

    def take_lose_create(self) -> tuple[str, float] | None:
        with self._lock:
            hit, value = self._lose_create.take()
            return value if hit else None

    def take_task_outcome(self) -> tuple[str, str | None, str | None]:
        """How the next created task ends: ("completed"|"failed"|"cancelled", error code,
        error message)."""
        with self._lock:
            hit, value = self._fail_next.take()
            if hit:
                code, message = value
                return "failed", code, message
            hit, _ = self._cancel_next.take()
            if hit:
                return "cancelled", CANCELLED_CODE, None
            return "completed", None, None

    def take_callback_plan(self) -> dict[str, Any]:
        """What the callback faults do to the next finished task's callback."""
        with self._lock:
            drop, _ = self._drop.take()
            if drop:
                return {"drop": True}
            dup, times = self._duplicate.take()
            delayed, delay = self._delay.take()
            reorder, _ = self._reorder.take()
            return {
                "drop": False,
                "times": times if dup else 1,
                "delay": delay if delayed else 0.0,
                "reorder": reorder,
            }
