"""The public Python API (``from django_evolink import services``).

Creating, submitting and refreshing a task live in :mod:`django_evolink.core.services`;
the poll sweep lives in :mod:`django_evolink.background.sweep`. This module gathers them
under the names the documentation promises.
"""

from __future__ import annotations

from .background.sweep import run_sweep
from .core.services import check_limits, create_task, refresh_task, submit_task


def poll_due_tasks(*, all_tasks: bool = False, limit: int | None = None) -> dict[str, int]:
    """One sweep over unfinished tasks that are due (``all_tasks``: due or not).

    Returns counts (``claimed``, ``polled``, ``changed``, ``completed``, ``failed``,
    ``errors``, ...). Safe to run from several workers at once.
    """
    return run_sweep(all_tasks=all_tasks, limit=limit)


__all__ = ["check_limits", "create_task", "poll_due_tasks", "refresh_task", "submit_task"]
