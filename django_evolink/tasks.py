"""The job paths of django-evolink 0.1.0 (``django_evolink.tasks.<job>``), kept so that jobs
queued and schedules stored by 0.1.0 still run after an upgrade. New code queues
:mod:`django_evolink.background.jobs`; the schedule installer rewrites a stored sweep
schedule to the new path. To be removed in 0.3.
"""

from __future__ import annotations

from .background.jobs import download_images, submit, sweep

__all__ = ["download_images", "submit", "sweep"]
