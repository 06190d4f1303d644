"""When to ask Evolink about a task: the poll schedule, its backoff and the task timeout.

Pure functions of a task and a time; the sweep (:mod:`django_evolink.sweep`) applies them.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from .. import conf
from .models import ImageTask


def callbacks_enabled() -> bool:
    """True when ``CALLBACK_BASE_URL`` is set (Evolink should call us first)."""
    return bool(conf.get("CALLBACK_BASE_URL"))


def first_poll_delay(task: ImageTask) -> float:
    """Seconds from acceptance to the first poll: Evolink's estimate, plus grace
    when a callback should arrive first, never less than POLL_MIN_INTERVAL."""
    delay = max(float(task.estimated_time or 0), float(conf.get("POLL_MIN_INTERVAL")))
    if callbacks_enabled():
        delay += float(conf.get("POLL_CALLBACK_GRACE"))
    return delay


def first_poll_at(task: ImageTask, now: datetime) -> datetime:
    """When to poll a task Evolink just accepted (capped at its deadline)."""
    return cap_at_deadline(task, now + timedelta(seconds=first_poll_delay(task)))


def next_poll_delay(attempt: int, *, retry_after: float | None = None) -> float:
    """Seconds until the next poll after ``attempt`` polls that found the task unfinished.

    Exponential from POLL_MIN_INTERVAL, doubled per attempt, capped at
    POLL_MAX_INTERVAL, with +-25 % jitter; a ``Retry-After`` is a floor (itself capped
    at POLL_MAX_INTERVAL so a hostile header cannot park a task for days).
    """
    lo = float(conf.get("POLL_MIN_INTERVAL"))
    cap = float(conf.get("POLL_MAX_INTERVAL"))
    base: float = min(cap, lo * (2 ** max(0, min(attempt, 30))))  # int ** int is Any
    delay = base * random.uniform(0.75, 1.25)
    delay = min(max(delay, lo), cap)
    if retry_after is not None:
        delay = max(delay, min(float(retry_after), cap))
    return delay


def task_deadline(task: ImageTask) -> datetime:
    """When the task times out: TASK_TIMEOUT after Evolink accepted it (or it was created)."""
    start = task.submitted_at or task.created_at
    return start + timedelta(seconds=float(conf.get("TASK_TIMEOUT")))


def is_past_deadline(task: ImageTask, now: datetime) -> bool:
    """True once the task has outlived TASK_TIMEOUT."""
    return now >= task_deadline(task)


def timeout_grace() -> timedelta:
    """How long after its deadline a task whose last check could not reach Evolink keeps
    being retried before it is timed out anyway (two maximal poll intervals)."""
    return timedelta(seconds=2 * float(conf.get("POLL_MAX_INTERVAL")))


def cap_at_deadline(task: ImageTask, when: datetime) -> datetime:
    """``when``, but never later than the task's deadline (so the last check is on time)."""
    return min(when, task_deadline(task))


def next_poll_at(task: ImageTask, now: datetime, *, attempt: int,
                 retry_after: float | None = None) -> datetime:
    """When to poll again after a poll at ``now`` (the ``attempt``-th of its kind).

    A task someone watches (``watched_until`` ahead) is polled again after
    ``WATCH_POLL_INTERVAL`` instead of the backoff. Before the deadline the next poll
    is capped at the deadline (the last check); after it (a check that
    could not reach Evolink) the backoff applies unchanged.
    """
    delay = next_poll_delay(attempt, retry_after=retry_after)
    if task.watched_until is not None and task.watched_until > now:
        # someone is watching: every few seconds (a Retry-After still holds)
        delay = min(delay, max(0.5, float(conf.get("WATCH_POLL_INTERVAL"))))
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), float(conf.get("POLL_MAX_INTERVAL"))))
    when = now + timedelta(seconds=delay)
    if now < task_deadline(task):
        when = min(when, task_deadline(task))
    return when
