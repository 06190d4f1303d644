"""State of the emulator: its clock, tasks, uploaded files, credits and logs.

Nothing here imports Django. Every mutable structure is guarded by the emulator's lock;
the log classes carry their own condition variable so tests can wait on them.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .faults import CANCELLED_CODE, DEFAULT_FAIL_CODE, TASK_ERROR_CODES

#: Final statuses: a task in one of them never changes again.
FINAL_STATUSES = ("completed", "failed", "cancelled")


class Clock:
    """The emulator's notion of time, in epoch seconds.

    By default it follows real time multiplied by ``speed`` (``speed=60``: one real second
    is one emulated minute). In manual mode (``manual=True``) it moves only when
    :meth:`advance` is called, which makes lifecycle tests fully deterministic.
    """

    def __init__(self, speed: float = 1.0, manual: bool = False, start: float | None = None):
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._lock = threading.Lock()
        self._speed = float(speed)
        self._manual = bool(manual)
        self._base_emulated = float(start if start is not None else time.time())
        self._base_real = time.monotonic()
        self._listeners: list[Callable[[], None]] = []

    # -- reading ---------------------------------------------------------------------
    def now(self) -> float:
        """The current emulated time (epoch seconds, float)."""
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> float:
        if self._manual:
            return self._base_emulated
        return self._base_emulated + (time.monotonic() - self._base_real) * self._speed

    @property
    def speed(self) -> float:
        """Emulated seconds per real second (ignored in manual mode)."""
        return self._speed

    @property
    def manual(self) -> bool:
        """True when time moves only on :meth:`advance`."""
        return self._manual

    def real_seconds(self, emulated_seconds: float) -> float:
        """How many real seconds ``emulated_seconds`` take at the current speed."""
        if self._manual:
            return math.inf if emulated_seconds > 0 else 0.0
        return emulated_seconds / self._speed

    # -- changing --------------------------------------------------------------------
    def _rebase(self) -> None:
        self._base_emulated = self._now_locked()
        self._base_real = time.monotonic()

    def set_speed(self, speed: float) -> None:
        """Change the speed factor from now on (time already elapsed is kept)."""
        if speed <= 0:
            raise ValueError("speed must be > 0")
        with self._lock:
            self._rebase()
            self._speed = float(speed)
        self._notify()

    def set_manual(self, manual: bool = True) -> None:
        """Switch manual mode on (time frozen, moves on :meth:`advance`) or off."""
        with self._lock:
            self._rebase()
            self._manual = bool(manual)
        self._notify()

    def advance(self, seconds: float) -> float:
        """Move emulated time forward by ``seconds``; returns the new time.

        Tasks that become due are brought up to date (and their callbacks scheduled)
        before this returns.
        """
        if seconds < 0:
            raise ValueError("the clock cannot go backwards")
        with self._lock:
            self._base_emulated += float(seconds)
            now = self._now_locked()
        self._notify()
        return now

    def on_change(self, listener: Callable[[], None]) -> None:
        """Register a function called after every :meth:`advance` or mode change."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()


@dataclass
class Task:
    """One emulated image task. ``to_json`` gives what ``GET /v1/tasks/{id}`` answers."""

    id: str
    model: str
    prompt: str
    n: int
    image_urls: list[str]
    callback_url: str | None
    created: float
    duration: float
    credits_reserved: float
    inputs: list[bytes] = field(default_factory=list, repr=False)
    #: The model's other parameters as received (size, quality, ...).
    params: dict[str, Any] = field(default_factory=dict)
    #: Pixel size of each result, from ``size`` and quality/resolution.
    result_size: tuple[int, int] = (1024, 1024)
    status: str = "pending"
    progress: int = 0
    #: "completed", "failed" or "cancelled": how the task ends when its time is up.
    outcome: str = "completed"
    #: Evolink's ``error.code`` of a failed or cancelled task (evolink-api.md §7).
    error_code: str | None = None
    error_message: str | None = None
    finished_at: float | None = None
    results_expire_at: float | None = None
    credits_charged: float = 0.0
    request_headers: dict[str, str] = field(default_factory=dict, repr=False)
    base_url: str = ""

    @property
    def pending_seconds(self) -> float:
        """How long the task stays ``pending`` before ``processing`` starts."""
        return min(2.0, self.duration * 0.1)

    @property
    def estimated_time(self) -> int:
        """The ``task_info.estimated_time`` announced (whole seconds, at least 1)."""
        return max(1, math.ceil(self.duration))

    @property
    def is_final(self) -> bool:
        """True once the task is completed, failed or cancelled."""
        return self.status in FINAL_STATUSES

    def result_urls(self) -> list[str]:
        """The URLs of the result images (whether or not they have expired)."""
        return [f"{self.base_url}/files/results/{self.id}/{i}.png" for i in range(self.n)]

    def to_json(self, status: str | None = None, progress: int | None = None) -> dict[str, Any]:
        """The task as Evolink's task query answers it (section 2 of evolink-api.md).

        ``status``/``progress`` override the current values (used for stale callbacks).
        """
        status = status or self.status
        progress = self.progress if progress is None else progress
        body: dict[str, Any] = {
            "created": int(self.created),
            "id": self.id,
            "model": self.model,
            "object": "image.generation.task",
            "progress": int(progress),
            "status": status,
            "task_info": {
                "can_cancel": status in ("pending", "processing"),
                "estimated_time": self.estimated_time,
            },
            "type": "image",
            "usage": {
                "billing_rule": "per_call",
                "credits_reserved": self.credits_reserved,
                "user_group": "default",
            },
        }
        if status == "completed":
            body["results"] = self.result_urls()
        elif status in ("failed", "cancelled"):
            body["error"] = self.error()
        return body

    def error(self) -> dict[str, str]:
        """The ``error`` object of a failed or cancelled task: ``{code, message}``."""
        from_code = TASK_ERROR_CODES.get(self.error_code or "", "")
        code = self.error_code or (CANCELLED_CODE if self.status == "cancelled"
                                   else DEFAULT_FAIL_CODE)
        return {"code": code,
                "message": self.error_message or from_code or TASK_ERROR_CODES[code]}


@dataclass
class UploadedFile:
    """A file received by ``POST /api/v1/files/upload/stream``."""

    file_id: str
    file_name: str
    original_name: str
    upload_path: str
    mime_type: str
    content: bytes = field(repr=False)
    uploaded_at: float = 0.0
    expires_at: float = 0.0

    @property
    def url_path(self) -> str:
        """The path part of ``file_url`` on the emulator."""
        return f"/files/{self.upload_path}/{self.file_name}"


@dataclass
class RequestRecord:
    """One request received by the emulator (the control API is not logged)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any
    body_size: int
    timestamp: float
    real_time: float
    status: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (used by the control API)."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "json": self.json,
            "body_size": self.body_size,
            "timestamp": self.timestamp,
            "status": self.status,
        }


def _match(record_path: str, pattern: str | None) -> bool:
    if pattern is None:
        return True
    return record_path == pattern or fnmatch.fnmatchcase(record_path, pattern)


_R = TypeVar("_R")


class _RecordLog(Generic[_R]):
    """A list of records guarded by a condition variable (appending wakes the waiters)."""

    def __init__(self) -> None:
        self._records: list[_R] = []
        self._cond = threading.Condition()

    def append(self, record: _R) -> None:
        with self._cond:
            self._records.append(record)
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget every record."""
        with self._cond:
            self._records.clear()

    def __iter__(self) -> Iterator[_R]:
        with self._cond:
            return iter(list(self._records))

    def __len__(self) -> int:
        with self._cond:
            return len(self._records)

    def __getitem__(self, index: int) -> _R:
        with self._cond:
            return self._records[index]


class RequestLog(_RecordLog[RequestRecord]):
    """The request log. Iterable, indexable; ``count``/``filter`` accept glob paths."""

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def filter(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        """Records whose method equals ``method`` and path matches ``path`` (glob allowed)."""
        with self._cond:
            return [
                r
                for r in self._records
                if (method is None or r.method == method.upper()) and _match(r.path, path)
            ]

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests match, e.g. ``count("GET", "/v1/tasks/task-unified-*")``."""
        return len(self.filter(method, path))

    def last(self, method: str | None = None, path: str | None = None) -> RequestRecord | None:
        """The most recent matching record, or None."""
        found = self.filter(method, path)
        return found[-1] if found else None


@dataclass
class CallbackAttempt:
    """One callback delivery attempt (or a dropped callback, with ``kind="dropped"``).

    ``kind``: ``"delivery"`` (the normal callback), ``"duplicate"`` (an extra copy made by
    the duplicate fault), ``"stale"`` (the out-of-order ``processing`` body of the reorder
    fault) or ``"dropped"`` (never sent). ``attempt`` is 1 for the first try, 2..4 for
    the retries.
    """

    task_id: str
    url: str
    kind: str
    attempt: int
    body: dict[str, Any]
    timestamp: float
    real_time: float
    http_status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the receiver answered 2xx."""
        return self.http_status is not None and 200 <= self.http_status < 300

    @property
    def task_status(self) -> str:
        """The ``status`` carried by the body that was sent."""
        return str(self.body.get("status"))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (used by the control API)."""
        return {
            "task_id": self.task_id,
            "url": self.url,
            "kind": self.kind,
            "attempt": self.attempt,
            "task_status": self.task_status,
            "body": self.body,
            "timestamp": self.timestamp,
            "http_status": self.http_status,
            "error": self.error,
            "ok": self.ok,
        }


class CallbackLog(_RecordLog[CallbackAttempt]):
    """The log of callback attempts, with :meth:`wait_for` to block until some happened."""

    def filter(self, task_id: str | None = None, kind: str | None = None) -> list[CallbackAttempt]:
        """Attempts for ``task_id`` and/or of ``kind``."""
        with self._cond:
            return [
                r
                for r in self._records
                if (task_id is None or r.task_id == task_id) and (kind is None or r.kind == kind)
            ]

    def sent(self, task_id: str | None = None) -> list[CallbackAttempt]:
        """Attempts that were actually sent (everything but ``dropped``)."""
        return [r for r in self.filter(task_id) if r.kind != "dropped"]

    def wait_for(self, count: int, timeout: float = 5.0, task_id: str | None = None,
                 sent_only: bool = True) -> list[CallbackAttempt]:
        """Block until at least ``count`` attempts are logged; return them.

        Raises ``TimeoutError`` after ``timeout`` real seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    r
                    for r in self._records
                    if (task_id is None or r.task_id == task_id)
                    and (not sent_only or r.kind != "dropped")
                ]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} callback attempt(s), got {len(found)}"
                    )
                self._cond.wait(remaining)


class TaskStore:
    """The emulator's tasks by id (a read-mostly mapping view for tests).

    Also keeps a heap of ``(time the task ends, order of creation, id)`` so that the
    emulator finds the tasks whose time is up without walking all of them
    (:meth:`pop_due`), and tasks that end at the same moment finish in the order they
    were created, whichever thread brings them up to date.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._ends: list[tuple[float, int, str]] = []
        self._created = itertools.count()

    def add(self, task: Task) -> None:
        self._tasks[task.id] = task
        heapq.heappush(self._ends, (task.created + task.duration, next(self._created),
                                    task.id))

    def pop_due(self, now: float) -> list[Task]:
        """The unfinished tasks whose end time (``created + duration``) is ``<= now``.

        Entries are re-checked when popped: a task finished meanwhile is dropped, and one
        whose duration was changed after it was added is pushed back with its new end.
        """
        due: list[Task] = []
        while self._ends and self._ends[0][0] <= now:
            _, order, task_id = heapq.heappop(self._ends)
            task = self._tasks.get(task_id)
            if task is None or task.is_final:
                continue
            end = task.created + task.duration
            if end <= now:
                due.append(task)
            else:
                heapq.heappush(self._ends, (end, order, task_id))
        return due

    def get(self, task_id: str) -> Task | None:
        """The task, or None."""
        return self._tasks.get(task_id)

    def values(self) -> list[Task]:
        """All tasks, oldest first."""
        return list(self._tasks.values())

    def clear(self) -> None:
        self._tasks.clear()
        self._ends.clear()

    @property
    def last(self) -> Task | None:
        """The most recently created task, or None."""
        return next(reversed(self._tasks.values()), None) if self._tasks else None

    def __getitem__(self, task_id: str) -> Task:
        return self._tasks[task_id]

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


#: Evolink's credit amounts have up to four decimals (evolink-api.md §8).
CREDIT_DECIMALS = 4


class Credits:
    """The balances: the account's (``data.user``) and the API key's (``data.token``).

    A create reserves its price from both, a finished task is charged (or refunded) on
    both. ``token_balance`` None: the key has no limit of its own (the emulator's guess of
    ``unlimited_credits: true``, its ``remaining_credits`` then shows the account's).
    Amounts keep four decimals, as Evolink's.
    """

    def __init__(self, balance: float, token_balance: float | None = None) -> None:
        self.initial = float(balance)
        self.initial_token = None if token_balance is None else float(token_balance)
        self.reset()

    def reset(self, balance: float | None = None) -> None:
        self.initial = float(self.initial if balance is None else balance)
        self.balance = self.initial  # the account's, reservations already deducted
        self.used = 0.0
        self.token_balance = self.initial_token  # the key's (None: unlimited)
        self.token_used = 0.0

    def set_token_balance(self, balance: float | None) -> None:
        """Set the key's remaining balance (None: no limit of its own)."""
        self.token_balance = self.initial_token = None if balance is None else float(balance)

    @staticmethod
    def _round(value: float) -> float:
        return round(value, CREDIT_DECIMALS)

    def short_of(self, amount: float) -> str | None:
        """``"user"`` or ``"token"`` when that balance cannot cover ``amount``, else None."""
        if amount > self.balance + 1e-9:
            return "user"
        if self.token_balance is not None and amount > self.token_balance + 1e-9:
            return "token"
        return None

    def reserve(self, amount: float) -> bool:
        """Deduct ``amount`` from both balances if they cover it; False otherwise."""
        if self.short_of(amount):
            return False
        self.balance = self._round(self.balance - amount)
        if self.token_balance is not None:
            self.token_balance = self._round(self.token_balance - amount)
        return True

    def settle(self, reserved: float, charged: float) -> None:
        """Release a reservation and charge ``charged`` instead."""
        self.balance = self._round(self.balance + reserved - charged)
        self.used = self._round(self.used + charged)
        if self.token_balance is not None:
            self.token_balance = self._round(self.token_balance + reserved - charged)
        self.token_used = self._round(self.token_used + charged)

    def as_json(self) -> dict[str, Any]:
        """The ``GET /v1/credits`` answer (sections 4 and 8 of evolink-api.md)."""
        token_remaining = self.balance if self.token_balance is None else self.token_balance
        return {
            "success": True,
            "message": "",
            "data": {
                "token": {
                    "remaining_credits": self._round(token_remaining),
                    "unlimited_credits": self.token_balance is None,
                    "used_credits": self._round(self.token_used),
                },
                # as the docs' example: no unlimited_credits on the account
                "user": {
                    "remaining_credits": self._round(self.balance),
                    "used_credits": self._round(self.used),
                },
            },
        }
