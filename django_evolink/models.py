"""The app's models, where Django looks for them (``django_evolink.models``).

They are defined in :mod:`django_evolink.core.models`, beside the transition path that is
the only writer of a task's state.
"""

from __future__ import annotations

from .core.models import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    STATUS_RANK,
    EventOutcome,
    EventSource,
    GeneratedImage,
    ImageTask,
    ImageTaskQuerySet,
    LimitLock,
    ModelPrice,
    Status,
    TaskEvent,
    _storage,  # noqa: F401  (named by migration 0001)
    result_upload_to,
)

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "STATUS_RANK",
    "EventOutcome",
    "EventSource",
    "GeneratedImage",
    "ImageTask",
    "ImageTaskQuerySet",
    "LimitLock",
    "ModelPrice",
    "Status",
    "TaskEvent",
    "result_upload_to",
]
