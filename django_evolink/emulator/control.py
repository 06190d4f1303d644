"""The control API under ``/_emulator/`` (:class:`ControlApi`): state, reset, clock, logs,
credits, faults and tasks, for tests in another process (no authentication: bind the
emulator to loopback). Its endpoints are listed in one route table, ``ControlApi.routes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .core import EmulatorCore
from .faults import CANCELLED_CODE, check_fail_code
from .http import CONTROL_PREFIX
from .lifecycle import Lifecycle
from .state import Task

#: Final outcome of each ``POST /_emulator/tasks/<id>/<action>``.
TASK_ACTIONS = {"fail": "failed", "cancel": "cancelled", "complete": "completed"}


@dataclass
class ControlRequest:
    """A control request: method, query (last value of each key), JSON body, route groups."""

    method: str
    query: dict[str, str]
    body: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)


class ControlRoute(NamedTuple):
    """``pattern`` (the path after ``/_emulator/``) and ``methods`` (None: any) -> handler."""

    pattern: re.Pattern[str]
    methods: tuple[str, ...] | None
    handler: Callable[[ControlRequest], dict[str, Any]]


class _MethodNotAllowed(Exception):
    pass


class ControlApi:
    """Answers ``/_emulator/`` requests for an emulator."""

    def __init__(self, core: EmulatorCore, lifecycle: Lifecycle, *,
                 reset: Callable[[], None], set_credits: Callable[[float], None]) -> None:
        self._core = core
        self._lifecycle = lifecycle
        self._reset = reset
        self._set_credits = set_credits
        task = r"tasks/(?P<task_id>[^/]+)"
        self.routes = [
            ControlRoute(re.compile(r"|state"), ("GET",), lambda r: self.state()),
            ControlRoute(re.compile(r"reset"), ("POST",), self._post_reset),
            ControlRoute(re.compile(r"clock"), None, self._clock),
            ControlRoute(re.compile(r"requests"), None, self._log("requests", "method", "path")),
            ControlRoute(re.compile(r"callbacks"), None, self._log("callbacks", "task_id", "kind")),
            ControlRoute(re.compile(r"credits"), None, self._credits),
            ControlRoute(re.compile(r"faults"), None, self._faults),
            ControlRoute(re.compile(r"expire-results"), ("POST",), self._expire_results),
            ControlRoute(re.compile(r"tasks"), ("GET",), self._tasks),
            ControlRoute(re.compile(task), ("GET",), self._task),
            ControlRoute(re.compile(task + r"/(?P<action>fail|cancel|complete)"), ("POST",),
                         self._end_task),
            ControlRoute(re.compile(task + r"(?:/(?:fail|cancel|complete))?"), None,
                         self._not_allowed),
        ]

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               body: Any) -> tuple[int, dict[str, Any]]:
        """Answer ``method path`` (``path`` starts with ``/_emulator``): (status, JSON)."""
        route = path[len(CONTROL_PREFIX):].strip("/")
        request = ControlRequest(method, {k: v[-1] for k, v in query.items()},
                                 body if isinstance(body, dict) else {})
        for entry in self.routes:
            match = entry.pattern.fullmatch(route)
            if match and (entry.methods is None or method in entry.methods):
                request.params = match.groupdict()
                break
        else:
            return 404, {"error": f"unknown control endpoint {method} /_emulator/{route}"}
        try:
            return 200, entry.handler(request)
        except _MethodNotAllowed:
            return 405, {"error": "method not allowed"}
        except KeyError as exc:
            return 404, {"error": f"unknown task {exc.args[0]!r}"}
        except (ValueError, TypeError) as exc:
            return 400, {"error": str(exc)}

    def task_state(self, task: Task) -> dict[str, Any]:
        """The task's query JSON plus the emulator's internal fields."""
        state = task.to_json()
        state["_emulator"] = {
            "prompt": task.prompt, "n": task.n, "image_urls": task.image_urls,
            "callback_url": task.callback_url, "duration": task.duration,
            "outcome": task.outcome, "error_code": task.error_code,
            "error_message": task.error_message,
            "finished_at": task.finished_at, "results_expire_at": task.results_expire_at,
            "credits_charged": task.credits_charged,
        }
        return state

    def state(self) -> dict[str, Any]:
        """A summary: url, clock, credits, counts, faults, configuration."""
        core = self._core
        with core._lock:
            self._lifecycle.refresh_locked()
            return {
                "url": core.url if core.running or core.public_url else None,
                "clock": self._clock_json(),
                "credits": core.credits.as_json()["data"],
                "tasks": len(core.tasks),
                "uploads": len(core.uploads),
                "requests": len(core.requests),
                "callbacks": len(core.callbacks),
                "faults": core.faults.as_dict(),
                "config": {
                    "allow_insecure_callbacks": core.allow_insecure_callbacks,
                    "allow_private_urls": core.allow_private_urls,
                    "result_ttl": core.result_ttl, "upload_ttl": core.upload_ttl,
                    "task_duration": core.task_duration,
                    "price_per_image": core.price_per_image,
                    "callback_retry_delays": list(core.callback_retry_delays),
                    "callback_timeout": core.callback_timeout,
                    "models": sorted(core.models),
                },
            }

    # -- route handlers ---------------------------------------------------------------
    def _clock_json(self) -> dict[str, Any]:
        clock = self._core.clock
        return {"now": clock.now(), "speed": clock.speed, "manual": clock.manual}

    def _post_reset(self, request: ControlRequest) -> dict[str, Any]:
        self._reset()
        return {"ok": True}

    def _clock(self, request: ControlRequest) -> dict[str, Any]:
        clock, body = self._core.clock, request.body
        if request.method == "POST":
            if "manual" in body:
                clock.set_manual(bool(body["manual"]))
            if "speed" in body:
                clock.set_speed(float(body["speed"]))
            if "advance" in body:
                clock.advance(float(body["advance"]))
        return self._clock_json()

    def _log(self, name: str, *filters: str) -> Callable[[ControlRequest], dict[str, Any]]:
        """The handler of the log ``name`` (requests, callbacks): DELETE clears it, other
        methods list the records, filtered by the query parameters ``filters``."""
        def handle(request: ControlRequest) -> dict[str, Any]:
            log = getattr(self._core, name)
            if request.method == "DELETE":
                log.clear()
                return {"ok": True}
            found = log.filter(*(request.query.get(key) for key in filters))
            return {"count": len(found), name: [record.as_dict() for record in found]}
        return handle

    def _credits(self, request: ControlRequest) -> dict[str, Any]:
        if request.method == "POST":
            if "credits" in request.body:
                self._set_credits(float(request.body["credits"]))
            if "token_credits" in request.body:
                token = request.body["token_credits"]
                with self._core._lock:
                    self._core.credits.set_token_balance(None if token is None else float(token))
        with self._core._lock:
            return self._core.credits.as_json()

    def _faults(self, request: ControlRequest) -> dict[str, Any]:
        if request.method == "DELETE":
            self._core.faults.clear()
        elif request.method == "POST":
            self._core.faults.configure(request.body)
        return self._core.faults.as_dict()

    def _expire_results(self, request: ControlRequest) -> dict[str, Any]:
        return {"expired": self._lifecycle.expire_results(request.body.get("task_id"))}

    def _tasks(self, request: ControlRequest) -> dict[str, Any]:
        with self._core._lock:
            self._lifecycle.refresh_locked()
            return {"tasks": [self.task_state(t) for t in self._core.tasks.values()]}

    def _task(self, request: ControlRequest) -> dict[str, Any]:
        with self._core._lock:
            self._lifecycle.refresh_locked()
            return self.task_state(self._core.tasks[request.params["task_id"]])

    def _end_task(self, request: ControlRequest) -> dict[str, Any]:
        outcome = TASK_ACTIONS[request.params["action"]]
        message = request.body.get("message") if outcome == "failed" else None
        code = {"failed": check_fail_code(request.body.get("code")),
                "cancelled": CANCELLED_CODE}.get(outcome)
        self._lifecycle.end_now(request.params["task_id"], outcome, message, code)
        return self._task(request)

    def _not_allowed(self, request: ControlRequest) -> dict[str, Any]:
        raise _MethodNotAllowed
