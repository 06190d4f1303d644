"""The functions django-q2 workers run, by dotted path (``django_evolink.background.jobs.*``).

Each job is small: it loads what it needs and calls the one function that does the work.
"""

from __future__ import annotations

import logging

from ..core.models import ImageTask
from ..core.services import submit_task
from ..exceptions import EvolinkError
from .downloads import download_task_images
from .sweep import run_sweep
from .watch import run_watch_loop

logger = logging.getLogger("django_evolink.background")


def submit(task_id: str) -> None:
    """Submit a queued task once (never resent when its outcome is unknown)."""
    task = ImageTask.objects.filter(pk=task_id).first()
    if task is None:
        return
    try:
        submit_task(task)
    except EvolinkError as exc:  # recorded on the task by submit_task
        logger.warning("task %s: submission refused: %s", task_id, exc)
    finally:
        # the sweep marks a re-enqueued submit with lease_until only: drop that mark
        ImageTask.objects.filter(pk=task_id, lease_token__isnull=True,
                                 lease_until__isnull=False).update(lease_until=None)


def download_images(task_id: str) -> dict[str, int]:
    """Copy every not-yet-stored image of the task into storage (idempotent)."""
    return download_task_images(task_id)


def sweep(all_tasks: bool = False) -> dict[str, int]:
    """(Scheduled) one poll sweep over due tasks; returns its counts."""
    return run_sweep(all_tasks=all_tasks)


def watch() -> dict[str, int]:
    """The watch loop: poll watched tasks every few seconds, then hand over or end."""
    return run_watch_loop()
