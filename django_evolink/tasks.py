"""django-q2 task functions and the helpers that enqueue them.

Workers import these by dotted path (``django_evolink.tasks.<name>``).
"""

from __future__ import annotations

import logging
from typing import Any

from django_q.tasks import async_task

logger = logging.getLogger("django_evolink.tasks")


def enqueue_submit(task_id: Any) -> None:
    """Have a worker submit a ``queued`` task (ASYNC_SUBMIT)."""
    async_task("django_evolink.tasks.submit", str(task_id), task_name=f"evolink-submit-{task_id}")


def submit(task_id: str) -> None:
    """Worker: submit a queued task once (never resent when its outcome is unknown)."""
    from .exceptions import EvolinkError
    from .models import ImageTask
    from .services import submit_task

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


def enqueue_downloads(task_id: Any) -> None:
    """Have a worker copy a completed task's images into the site's storage."""
    async_task("django_evolink.tasks.download_images", str(task_id),
               task_name=f"evolink-download-{task_id}")


def download_images(task_id: str) -> dict[str, int]:
    """Worker: copy every not-yet-stored image of the task into storage (idempotent)."""
    from .downloads import download_task_images

    return download_task_images(task_id)


def enqueue_sweep(*, all_tasks: bool = False) -> Any:
    """Have a worker run one sweep now (``evolink_poll --enqueue``)."""
    return async_task("django_evolink.tasks.sweep", all_tasks=all_tasks,
                      task_name="evolink-sweep")


def sweep(all_tasks: bool = False) -> dict[str, int]:
    """Worker (scheduled): one poll sweep over due tasks; returns its counts."""
    from .services import poll_due_tasks

    return poll_due_tasks(all_tasks=all_tasks)
