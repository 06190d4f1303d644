"""Putting jobs on django-q2's queue: one helper per job, naming it by dotted path.

Workers import the jobs by these paths (see :mod:`django_evolink.background.jobs`).
"""

from __future__ import annotations

from typing import Any

from django_q.tasks import async_task

JOBS = "django_evolink.background.jobs"
SUBMIT_JOB = f"{JOBS}.submit"
DOWNLOAD_JOB = f"{JOBS}.download_images"
SWEEP_JOB = f"{JOBS}.sweep"
WATCH_JOB = f"{JOBS}.watch"


def enqueue_submit(task_id: Any) -> None:
    """Have a worker submit a ``queued`` task (ASYNC_SUBMIT)."""
    async_task(SUBMIT_JOB, str(task_id), task_name=f"evolink-submit-{task_id}")


def enqueue_downloads(task_id: Any) -> None:
    """Have a worker copy a completed task's images into the site's storage."""
    async_task(DOWNLOAD_JOB, str(task_id), task_name=f"evolink-download-{task_id}")


def enqueue_sweep(*, all_tasks: bool = False) -> Any:
    """Have a worker run one sweep now (``evolink_poll --enqueue``)."""
    return async_task(SWEEP_JOB, all_tasks=all_tasks, task_name="evolink-sweep")


def enqueue_watch() -> None:
    """Have a worker run the watch loop (:mod:`django_evolink.background.watch`)."""
    async_task(WATCH_JOB, task_name="evolink-watch")
