"""Background work answering what the core announces (:mod:`django_evolink.core.hooks`).

Connected once by :meth:`django_evolink.apps.DjangoEvolinkConfig.ready`.
"""

from __future__ import annotations

from typing import Any

from ..core import hooks
from . import queue, watch


def _submit(sender: Any, task_id: Any, **kwargs: Any) -> None:
    queue.enqueue_submit(task_id)


def _download(sender: Any, task_id: Any, **kwargs: Any) -> None:
    queue.enqueue_downloads(task_id)


def _watch(sender: Any, task_id: Any, **kwargs: Any) -> None:
    watch.ensure_loop()


def connect() -> None:
    """Queue a submit job and a download job when the core asks for them."""
    hooks.submit_requested.connect(_submit, dispatch_uid="django_evolink_submit")
    hooks.images_recorded.connect(_download, dispatch_uid="django_evolink_download")
    hooks.watch_requested.connect(_watch, dispatch_uid="django_evolink_watch")
