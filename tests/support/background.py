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


def task_gets(emulator, evolink_id: str) -> int:
    """Status requests the emulator received for one task."""
    return emulator.requests.count("GET", f"/v1/tasks/{evolink_id}")
