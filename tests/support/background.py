"""Helpers of the background-work tests (sweep, downloads, commands, concurrency)."""

from __future__ import annotations

import datetime as dt
import secrets

from django.utils import timezone

from django_evolink.emulator import Task as EmulatedTask
from django_evolink.models import ImageTask, Status


class SharedClock:
    """Moves Django's ``timezone.now`` and the emulator's manual clock together."""

    def __init__(self, monkeypatch, emulator=None):
        self.now = timezone.now()
        self.emulator = emulator
        monkeypatch.setattr(timezone, "now", lambda: self.now)

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        if self.emulator is not None:
            self.emulator.clock.advance(seconds)
        return self.now


def emulated_task(emulator, *, duration: float = 30.0, n: int = 1, outcome: str = "completed",
                  created: float | None = None) -> EmulatedTask:
    """Put a task straight into the emulator (no create request, no input download)."""
    task_id = f"task-unified-{int(emulator.clock.now())}-{secrets.token_hex(6)}"
    task = EmulatedTask(
        id=task_id, model="wan2.5-image-to-image", prompt="a cat", n=n,
        image_urls=["https://example.com/in.png"], callback_url=None,
        created=emulator.clock.now() if created is None else created, duration=duration,
        credits_reserved=1.2 * n, outcome=outcome, base_url=emulator.url,
    )
    with emulator._lock:
        emulator.tasks.add(task)
    return task


def db_task(evolink_id: str | None, *, status: str = Status.PENDING, due_in: float = -1,
            submitted_ago: float = 10, **extra) -> ImageTask:
    """An ImageTask Evolink accepted ``submitted_ago`` seconds ago, due in ``due_in`` s."""
    now = timezone.now()
    fields = {
        "evolink_id": evolink_id, "model": "wan2.5-image-to-image", "prompt": "a cat",
        "image_urls": ["https://example.com/in.png"], "n": 1, "status": status,
        "submitted_at": now - dt.timedelta(seconds=submitted_ago) if evolink_id else None,
        "next_poll_at": now + dt.timedelta(seconds=due_in) if evolink_id else None,
        "estimated_time": 30,
    }
    fields.update(extra)
    return ImageTask.objects.create(**fields)


def emulated_db_task(emulator, *, duration: float = 30.0, n: int = 1,
                     outcome: str = "completed", **db_fields) -> ImageTask:
    """A task put straight into the emulator (:func:`emulated_task`) and its ImageTask
    (:func:`db_task`, with ``db_fields``)."""
    remote = emulated_task(emulator, duration=duration, n=n, outcome=outcome)
    return db_task(remote.id, **db_fields)


def emulated_db_tasks(emulator, count: int, **kwargs) -> list[ImageTask]:
    """``count`` tasks of :func:`emulated_db_task` (same arguments)."""
    return [emulated_db_task(emulator, **kwargs) for _ in range(count)]


def poll_settings(settings, **extra):
    """``settings.EVOLINK`` for the poll tests: no retries, a 5 to 300 s backoff, and
    ``extra``; returns ``settings``."""
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0, "POLL_MIN_INTERVAL": 5.0,
                        "POLL_MAX_INTERVAL": 300.0, **extra}
    return settings


def task_gets(emulator, evolink_id: str) -> int:
    """Status requests the emulator received for one task."""
    return emulator.requests.count("GET", f"/v1/tasks/{evolink_id}")
