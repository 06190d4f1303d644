"""Another try of a task's missing images (the admin's "Download missing images")."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from django_evolink.background import downloads
from django_evolink.models import GeneratedImage, Status
from tests.support.background import db_task

pytestmark = pytest.mark.django_db


def _task(status: str = Status.COMPLETED, **images: dict):
    task = db_task(f"task-unified-retry-{GeneratedImage.objects.count()}", status=status,
                   next_poll_at=None)
    now = timezone.now()
    for index, extra in enumerate(images.values()):
        fields = {"source_url": f"https://93.184.216.34/{index}.png",
                  "source_expires_at": now + dt.timedelta(hours=20), "next_download_at": now,
                  **extra}
        GeneratedImage.objects.create(task=task, index=index, **fields)
    return task


def test_only_missing_images_with_a_usable_link_are_made_due(monkeypatch):
    queued = []
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", queued.append)
    later = timezone.now() + dt.timedelta(hours=1)
    task = _task(
        failed={"download_error": "HTTP 404", "download_attempts": 3, "next_download_at": None},
        waiting={"download_attempts": 2, "next_download_at": later},
        stored={"file": "evolink/results/x/2.png"},
        expired={"download_error": "gave up", "source_expires_at": timezone.now()},
    )
    now = timezone.now()
    assert downloads.retry_missing_images(task, now) == downloads.RetryRequest(3, 2)
    assert queued == [task.pk]
    images = {i.index: i for i in task.images.all()}
    for index, attempts in ((0, 3), (1, 2)):
        image = images[index]
        assert (image.download_error, image.next_download_at, image.download_attempts) == (
            "", now, attempts)
    assert images[3].download_error == "gave up"  # past its deadline: left alone


def test_nothing_to_retry_enqueues_nothing(monkeypatch):
    queued = []
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", queued.append)
    running = _task(Status.PROCESSING, first={})
    stored = _task(first={"file": "evolink/results/y/0.png"})
    assert downloads.retry_missing_images(running) == (0, 0)
    assert downloads.retry_missing_images(stored) == (0, 0)
    assert queued == []
