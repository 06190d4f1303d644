"""Signals sent by django-evolink, each after the change is committed.

All are sent with ``sender=ImageTask`` and the task as ``task``:

- ``task_status_changed(task, old_status, new_status)``: once per status change.
- ``task_completed(task)``: once per task, after its images are recorded.
- ``task_failed(task)``: once per task that ends failed, cancelled or timed out.
- ``task_images_stored(task)``: once per task, when all its images are in storage.

And one sent when a create is refused (nothing was saved, so no task; sent at once):

- ``limit_exceeded(user, limit, allowed, used, requested, remaining, retry_after,
  request)``: a create would have passed a spending limit (docs/limits.md).
"""

from django.dispatch import Signal

task_status_changed = Signal()
task_completed = Signal()
task_failed = Signal()
task_images_stored = Signal()
limit_exceeded = Signal()
