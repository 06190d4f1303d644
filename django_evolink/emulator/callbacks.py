"""Callback planning and delivery, with Evolink's retry schedule (:class:`CallbackDelivery`).

When a task with a ``callback_url`` ends, its deliveries are planned (the fault switches may
drop, delay, duplicate or reorder them) on a heap of emulated due times. Due deliveries are
POSTed from threads of their own; a failed one is retried ``callback_retry_delays`` emulated
seconds later (Evolink: 1, 2 and 4 s). ``forget_locked`` (reset) makes every planned or
running delivery of the past a no-op through a generation counter.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from .core import EmulatorCore
from .state import CallbackAttempt, Task

#: Emulated seconds between a failed callback and its retry (so at most 4 deliveries).
EVOLINK_RETRY_DELAYS = (1.0, 2.0, 4.0)


class CallbackDelivery:
    """Plans, sends and retries the callbacks of an emulator."""

    def __init__(self, core: EmulatorCore) -> None:
        self._core = core
        self._events: list[tuple[float, int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._generation = 0
        self._inflight = 0
        self._idle = threading.Condition(core._lock)

    def forget_locked(self) -> None:
        """Drop every planned delivery; deliveries under way are not logged nor retried."""
        self._generation += 1
        self._events.clear()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no callback is being delivered and none is due now."""
        deadline = time.monotonic() + timeout
        while True:
            self.run_due()
            with self._core._lock:
                if not self._inflight and not self._due_locked():
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("callbacks still in flight")
                self._idle.wait(0.02)

    def run_due(self) -> None:
        """Start every delivery whose emulated time has come."""
        while True:
            with self._core._lock:
                if not self._due_locked():
                    return
                _, _, generation, action = heapq.heappop(self._events)
                if generation != self._generation:
                    continue
            action()

    def plan_locked(self, task: Task, at: float) -> None:
        """Plan the callbacks of ``task``, which ended at emulated time ``at``."""
        core = self._core
        plan = core.faults.take_callback_plan()
        body = task.to_json()
        url = task.callback_url or ""
        now = core.clock.now()
        if plan["drop"]:
            core.callbacks.append(CallbackAttempt(task.id, url, "dropped", 0, body, now,
                                                  time.monotonic()))
            return
        stale = None
        if plan["reorder"]:
            stale = task.to_json(status="processing", progress=max(1, min(99, task.progress
                                 if task.status != "completed" else 50)))
        when = max(at, now) + plan["delay"]
        for copy in range(plan["times"]):
            kind = "delivery" if copy == 0 else "duplicate"
            then = None
            if copy == 0 and stale is not None:
                then = self._stale_sender(task.id, url, stale)
            self._schedule_locked(when, self._chain(task.id, url, body, kind, 1, then))

    def _schedule_locked(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (at, next(self._seq), self._generation, action))
        self._idle.notify_all()

    def _due_locked(self) -> bool:
        return bool(self._events) and self._events[0][0] <= self._core.clock.now()

    def _stale_sender(self, task_id: str, url: str, body: dict[str, Any]) -> Callable[[], None]:
        def send() -> None:
            self._chain(task_id, url, body, "stale", 1, None)()
        return send

    def _chain(self, task_id: str, url: str, body: dict[str, Any], kind: str, attempt: int,
               then: Callable[[], None] | None) -> Callable[[], None]:
        generation = self._generation

        def start() -> None:
            with self._core._lock:
                if generation != self._generation or self._core._stop.is_set():
                    return
                self._inflight += 1
            threading.Thread(
                target=self._deliver, args=(task_id, url, body, kind, attempt, then, generation),
                name="evolink-emulator-callback", daemon=True,
            ).start()
        return start

    def _deliver(self, task_id: str, url: str, body: dict[str, Any], kind: str, attempt: int,
                 then: Callable[[], None] | None, generation: int) -> None:
        core = self._core
        status: int | None = None
        error: str | None = None
        try:
            response = core._http.post(
                url, json=body, timeout=core.callback_timeout,
                headers={"User-Agent": "Evolink-Emulator/1.0"},
                # a 3xx is an answer like any non-2xx: not delivered, retried; never followed
                allow_redirects=False,
            )
            status = response.status_code
            response.close()
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"
        record = CallbackAttempt(task_id, url, kind, attempt, body, core.clock.now(),
                                 time.monotonic(), status, error)
        with core._lock:
            if generation == self._generation:
                core.callbacks.append(record)
                if not record.ok and attempt <= len(core.callback_retry_delays):
                    at = core.clock.now() + core.callback_retry_delays[attempt - 1]
                    self._schedule_locked(
                        at, self._chain(task_id, url, body, kind, attempt + 1, then)
                    )
                    then = None
            self._inflight -= 1
            self._idle.notify_all()
        if then is not None and generation == self._generation:
            then()
