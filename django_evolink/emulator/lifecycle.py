"""The task lifecycle on the emulated clock (:class:`Lifecycle`).

A task is ``pending``, then ``processing`` with a rising progress, and ends
``task_duration`` emulated seconds after its creation with its outcome (``completed``,
``failed`` or ``cancelled``): then it is charged (or refunded) and its callbacks are
planned. Tasks are brought up to date lazily — when a request or the control API looks at
them, when the clock moves, and on every tick of a background thread — using the task
store's heap of end times, so that a tick does not walk the unfinished tasks.
"""

from __future__ import annotations

import logging
import time

from .callbacks import CallbackDelivery
from .core import EmulatorCore
from .state import Task

logger = logging.getLogger("django_evolink.emulator")

#: Emulated seconds from create to the end of a task (``task_info.estimated_time``).
DEFAULT_TASK_SECONDS = 30.0


class Lifecycle:
    """Moves the tasks of an emulator along its clock."""

    def __init__(self, core: EmulatorCore, delivery: CallbackDelivery) -> None:
        self._core = core
        self._delivery = delivery
        core.clock.on_change(self._on_clock_change)

    def tick_loop(self) -> None:
        """Body of the ticking thread: finish due tasks every ``tick_interval`` until stop."""
        core = self._core
        while not core._stop.wait(core.tick_interval):
            try:
                with core._lock:
                    self.refresh_due_locked()
                self._delivery.run_due()
            except Exception:  # pragma: no cover - keep ticking whatever happens
                logger.exception("emulator tick failed")

    def refresh_locked(self) -> None:
        """Bring every unfinished task up to the current emulated time (walks them all:
        for the control API and test helpers; requests use :meth:`refresh_due_locked`)."""
        now = self._core.clock.now()
        for task in self._core.tasks.values():
            self._refresh_task_locked(task, now)

    def refresh_due_locked(self, task: Task | None = None) -> None:
        """Finish the tasks whose time is up (from the store's heap of end times, without
        walking the others), then bring ``task`` (the one a request is about) up to date.
        Progress only matters when a task is shown, so the others are left as they are."""
        now = self._core.clock.now()
        for due in self._core.tasks.pop_due(now):
            self._refresh_task_locked(due, now)
        if task is not None:
            self._refresh_task_locked(task, now)

    def end_now(self, task_id: str, outcome: str, message: str | None,
                code: str | None = None) -> Task:
        """End ``task_id`` now with ``outcome`` (and ``error.code`` ``code`` when it is
        failed or cancelled); KeyError if unknown, ValueError if ended."""
        core = self._core
        with core._lock:
            task = core.tasks[task_id]
            self.refresh_locked()
            if task.is_final:
                raise ValueError(f"task {task_id} is already {task.status}")
            task.outcome, task.error_code, task.error_message = outcome, code, message
            self._finish_locked(task, core.clock.now())
        self._delivery.run_due()
        return task

    def expire_results(self, task_id: str | None = None) -> int:
        """Make the result images of ``task_id`` (None: every task) expire now."""
        core = self._core
        with core._lock:
            now = core.clock.now()
            count = 0
            for task in core.tasks.values():
                if task_id is not None and task.id != task_id:
                    continue
                if task.status == "completed":
                    task.results_expire_at = now
                    count += 1
            if task_id is not None and task_id not in core.tasks:
                raise KeyError(task_id)
            return count

    def wait_for_task(self, task_id: str, status: str = "completed",
                      timeout: float = 10.0) -> Task:
        """Block (real time) until ``task_id`` has ``status``; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            with self._core._lock:
                self.refresh_locked()
                task = self._core.tasks[task_id]
                if task.status == status:
                    return task
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} is {task.status}, not {status}")
            time.sleep(0.01)

    def _on_clock_change(self) -> None:
        with self._core._lock:
            self.refresh_locked()
        self._delivery.run_due()

    def _refresh_task_locked(self, task: Task, now: float) -> None:
        if task.is_final:
            return
        elapsed = now - task.created
        if elapsed >= task.duration:
            self._finish_locked(task, task.created + task.duration)
        elif elapsed >= task.pending_seconds:
            span = max(task.duration - task.pending_seconds, 1e-9)
            progress = int(100 * (elapsed - task.pending_seconds) / span)
            task.status = "processing"
            task.progress = max(task.progress, min(99, max(1, progress)))

    def _finish_locked(self, task: Task, at: float) -> None:
        core = self._core
        task.status = task.outcome
        task.finished_at = at
        if task.outcome == "completed":
            task.progress = 100
            task.credits_charged = round(core.price_per_image * task.n, 4)
            task.results_expire_at = at + core.result_ttl
        core.credits.settle(task.credits_reserved, task.credits_charged)
        if task.callback_url:
            self._delivery.plan_locked(task, at)
