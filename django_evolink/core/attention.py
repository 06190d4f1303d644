"""Attention: which tasks someone is watching, so they are polled every few seconds.

A detail request (``GET tasks/{id}/``) or an open event stream marks a task *watched* for
``WATCH_SECONDS``: ``watched_until`` is pushed forward and the task is made due within
``WATCH_POLL_INTERVAL``, with one conditional UPDATE (viewers never poll Evolink
themselves). While watched, every poll schedules the next one ``WATCH_POLL_INTERVAL``
later (:func:`.poll_policy.next_poll_at`); the sweep's lease-fenced claim makes sure one
poll happens per task and interval whatever the number of viewers and workers. The
watch loop (:mod:`django_evolink.background.watch`) does the polling between two
ticks of the minute sweep; it is asked for through :data:`.hooks.watch_requested`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Q
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from .. import conf
from . import hooks
from .models import ImageTask


def watch_seconds() -> float:
    """How long one detail request (or stream refresh) keeps a task watched."""
    return max(1.0, float(conf.get("WATCH_SECONDS")))


def watch_interval() -> float:
    """Seconds between two polls of a watched task (never below 0.5)."""
    return max(0.5, float(conf.get("WATCH_POLL_INTERVAL")))


def is_watched(task: ImageTask, now: datetime) -> bool:
    """True while someone watches ``task``."""
    return task.watched_until is not None and task.watched_until > now


def watched(now: datetime) -> Q:
    """The condition of watched tasks at ``now``."""
    return Q(watched_until__gt=now)


def watch(task: ImageTask | Any, now: datetime | None = None) -> bool:
    """Mark ``task`` (an :class:`ImageTask` or its pk) watched for ``WATCH_SECONDS``.

    Only an unfinished task is marked, and only when its mark would run out within half
    of ``WATCH_SECONDS`` (so a page polling every second writes once per 15 s, not every
    second). When it was marked, the task is made due within ``WATCH_POLL_INTERVAL`` and
    the watch loop is asked for. Returns whether the row was written.
    """
    now = now or timezone.now()
    task_id = task.pk if isinstance(task, ImageTask) else task
    until = now + timedelta(seconds=watch_seconds())
    refresh_before = now + timedelta(seconds=watch_seconds() / 2)
    soon = now + timedelta(seconds=watch_interval())
    written = (
        ImageTask.objects.unfinished()
        .filter(Q(watched_until__isnull=True) | Q(watched_until__lt=refresh_before), pk=task_id)
        .update(watched_until=until, next_poll_at=Least(Coalesce(F("next_poll_at"), soon), soon))
    )
    if written:
        if isinstance(task, ImageTask):
            task.watched_until = until
        hooks.announce_watch_requested(task_id)
    return bool(written)
