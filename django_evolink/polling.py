"""When to ask Evolink about a task: the poll schedule and its backoff."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from . import conf
from .models import ImageTask


def callbacks_enabled() -> bool:
    return bool(conf.get("CALLBACK_BASE_URL"))


def first_poll_delay(task: ImageTask) -> float:
    """Seconds from acceptance to the first poll: Evolink's estimate, plus grace
    when a callback should arrive first, never less than POLL_MIN_INTERVAL."""
    delay = max(float(task.estimated_time or 0), float(conf.get("POLL_MIN_INTERVAL")))
    if callbacks_enabled():
        delay += float(conf.get("POLL_CALLBACK_GRACE"))
    return delay


def first_poll_at(task: ImageTask, now: datetime) -> datetime:
    return now + timedelta(seconds=first_poll_delay(task))


def next_poll_delay(attempt: int, *, retry_after: float | None = None) -> float:
    """Seconds until the next poll after ``attempt`` polls that found the task unfinished.

    Exponential from POLL_MIN_INTERVAL, doubled per attempt, capped at
    POLL_MAX_INTERVAL, with +-25 % jitter; a ``Retry-After`` is a floor.
    """
    lo = float(conf.get("POLL_MIN_INTERVAL"))
    cap = float(conf.get("POLL_MAX_INTERVAL"))
    base = min(cap, lo * (2 ** max(0, min(attempt, 30))))
    delay = base * random.uniform(0.75, 1.25)
    delay = min(max(delay, lo), cap)
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay
