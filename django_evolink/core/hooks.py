"""What the core announces for background work, without importing the queue.

The core decides *that* work is needed (a queued task should be submitted by a worker, a
completed task's images should be copied); :mod:`django_evolink.background.receivers`
decides *how* (django-q2 jobs) and connects itself when the app is ready. Both
announcements are made after the deciding transaction committed.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

#: A ``queued`` task is to be submitted by a worker (``ASYNC_SUBMIT``). Sends ``task_id``.
submit_requested = Signal()
#: A completed task's result links were recorded and its images are to be copied into
#: the site's storage. Sends ``task_id``.
images_recorded = Signal()
#: Someone started (or keeps) watching a task: it should be polled every few seconds by
#: the watch loop. Sends ``task_id``.
watch_requested = Signal()


def announce_submit_requested(task_id: Any) -> None:
    """Ask for ``task_id`` to be submitted in the background."""
    submit_requested.send(sender=None, task_id=task_id)


def announce_images_recorded(task_id: Any) -> None:
    """Ask for the images of ``task_id`` to be copied into storage."""
    images_recorded.send(sender=None, task_id=task_id)


def announce_watch_requested(task_id: Any) -> None:
    """Ask for the watch loop to run (``task_id`` is now watched)."""
    watch_requested.send(sender=None, task_id=task_id)
