"""Versions of what a person watching a task sees: ETags and event-stream ids.

A task's *version* changes whenever its API answer can change: every write through
:mod:`.transitions` bumps ``updated_at``, and a stored result image changes the image's
``url``. The version is ``"<updated_at in microseconds>.<images stored>"``; both parts
only grow, so versions are ordered (an event stream resumed with ``Last-Event-ID`` sends
only newer ones).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from .models import GeneratedImage, ImageTask


def stored_images(task: ImageTask) -> int:
    """How many of the task's result images are stored (uses prefetched images)."""
    images: Iterable[GeneratedImage] = task.images.all()
    return sum(1 for image in images if image.file)


def task_version(task: ImageTask) -> str:
    """The ordered version of ``task``'s API answer (see the module docstring)."""
    micros = int(task.updated_at.timestamp() * 1_000_000)
    return f"{micros}.{stored_images(task)}"


def parse_version(value: str | None) -> tuple[int, int] | None:
    """``"<micros>.<stored>"`` as a comparable tuple; None for anything else."""
    if not value:
        return None
    head, _, tail = value.strip().partition(".")
    if not (head.isdigit() and tail.isdigit()) or len(head) > 20 or len(tail) > 6:
        return None
    return int(head), int(tail)


def task_etag(task: ImageTask) -> str:
    """Weak ETag of one task's answer: its id, version, status and progress."""
    return f'W/"{task.pk.hex}-{task_version(task)}-{task.status}-{task.progress}"'


def list_etag(params: Mapping[str, Any], count: int, tasks: Iterable[ImageTask]) -> str:
    """Weak ETag of one page of the task list: the query (filters, page), the total
    count and every row's version."""
    digest = hashlib.sha256()
    for key in sorted(params):
        digest.update(f"{key}={params[key]}\n".encode())
    digest.update(f"count={count}\n".encode())
    for task in tasks:
        digest.update(f"{task.pk.hex}:{task_version(task)}:{task.status}:{task.progress}\n"
                      .encode())
    return f'W/"{digest.hexdigest()[:32]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison of ``If-None-Match`` (a list, or ``*``) with ``etag`` (RFC 9110)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))
