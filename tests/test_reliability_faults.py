"""Faults injected with the emulator's switches, over real HTTP: nothing lost, nothing twice.

Each scenario ends with :func:`assert_invariants`: every task is final, every completed
task has exactly ``n`` images, each stored once (one file per image, no stray files),
the signals fired once per task, and the credits we mirror agree with the emulator's
ledger. The figures quoted in docs/reliability.md come from these tests.
"""

from __future__ import annotations

import logging
import os
from collections import Counter

import pytest
from django.db import OperationalError
from django.test import Client

from django_evolink import callbacks, signals, sweep
from django_evolink.client import get_client
from django_evolink.models import (
    GeneratedImage,
    ImageTask,
    Status,
    TaskEvent,
)
from tests.conftest import make_image_bytes
from tests.evolink_samples import result_urls, task_answer
from tests.helpers_api import callback_path, make_task

# --------------------------------------------------------------------------- helpers


class SignalCounter:
    """Counts every django-evolink signal per task."""

    NAMES = ("task_status_changed", "task_completed", "task_failed", "task_images_stored")

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def __enter__(self) -> SignalCounter:
        for name in self.NAMES:
            getattr(signals, name).connect(self._receiver(name), weak=False,
                                           dispatch_uid=f"rel-{name}")
        return self

    def __exit__(self, *exc) -> None:
        for name in self.NAMES:
            getattr(signals, name).disconnect(dispatch_uid=f"rel-{name}")

    def _receiver(self, name):
        def receive(sender, task, **kwargs):
            key = (name, task.pk, kwargs.get("new_status"))
            self.counts[key] += 1
        return receive

    def of(self, name: str) -> Counter:
        return Counter({k[1]: v for k, v in self.counts.items() if k[0] == name})


def assert_invariants(emulator, tasks, signals_seen: SignalCounter | None = None) -> dict:
    """The invariants of every scenario; returns figures for the report."""
    from django_evolink import conf

    ids = [t.pk for t in tasks]
    rows = list(ImageTask.objects.filter(pk__in=ids))
    assert len(rows) == len(ids)
    assert all(t.status in (Status.COMPLETED, Status.FAILED, Status.CANCELLED) for t in rows), \
        Counter(t.status for t in rows)
    completed = [t for t in rows if t.status == Status.COMPLETED]
    storage = conf.storage()
    for task in completed:
        images = list(task.images.order_by("index"))
        assert [i.index for i in images] == list(range(task.n))
        assert all(i.file and storage.exists(i.file.name) for i in images), task.pk
        assert len({i.file.name for i in images}) == task.n
        _dirs, files = storage.listdir(f"evolink/results/{task.pk}")
        assert sorted(files) == sorted(os.path.basename(i.file.name) for i in images)
        assert task.images_stored_at is not None
    if signals_seen is not None:
        completed_ids = {t.pk for t in completed}
        assert set(signals_seen.of("task_completed")) == completed_ids
        assert set(signals_seen.of("task_images_stored")) == completed_ids
        for name in ("task_completed", "task_failed", "task_images_stored"):
            assert all(n == 1 for n in signals_seen.of(name).values()), (name, signals_seen.counts)
        finals = Counter(k[1] for k in signals_seen.counts
                         if k[0] == "task_status_changed" and k[2] in
                         (Status.COMPLETED, Status.FAILED, Status.CANCELLED))
        assert all(n == 1 for n in finals.values())
    # credits: what we mirror for completed tasks is what the emulator charged
    remote = {t.id: t for t in emulator.tasks.values()}
    ours = {t.evolink_id for t in rows if t.evolink_id}
    charged_ours = sum(remote[e].credits_charged for e in ours if e in remote)
    mirrored = sum(float(t.credits_reserved or 0) for t in completed)
    assert abs(charged_ours - mirrored) < 1e-6, (charged_ours, mirrored)
    return {
        "tasks": len(rows),
        "completed": len(completed),
        "images": GeneratedImage.objects.filter(task__in=ids).count(),
        "charged": round(charged_ours, 4),
    }


def task_gets(emulator, evolink_id: str) -> int:
    return emulator.requests.count("GET", f"/v1/tasks/{evolink_id}")


@pytest.fixture
def fault_settings(settings, evolink_emulator):
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0, "POLL_MIN_INTERVAL": 5.0,
                        "POLL_MAX_INTERVAL": 300.0, "POLL_CONCURRENCY": 4,
                        "RETRY_MAX_WAIT": 0.05}
    return settings


def input_url() -> str:
    return get_client().upload_file(make_image_bytes(), file_name="in.png")["file_url"]


def sweep_until_final(clock, step: float, max_sweeps: int, capture) -> int:
    """Sweep every ``step`` seconds until nothing is unfinished; returns sweeps run."""
    for i in range(1, max_sweeps + 1):
        clock.advance(step)
        with capture(execute=True):
            sweep.run_sweep()
        if not ImageTask.objects.unfinished().exists():
            return i
    return max_sweeps


# ------------------------------------------------ database unavailable during a callback


@pytest.mark.django_db
def test_database_down_while_recording_a_callback_answers_503_without_the_token(
        settings, monkeypatch, caplog):
    settings.EVOLINK = {**settings.EVOLINK, "TRUST_CALLBACK_BODY": True}
    task, raw = make_task()
    calls = {"n": 0}
    real = callbacks.record_event

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr(callbacks, "record_event", flaky)
    monkeypatch.setattr("django_evolink.tasks.enqueue_downloads", lambda pk: None)
    body = task_answer(id=task.evolink_id, status="completed",
                       results=result_urls(task.evolink_id, 1))
    with caplog.at_level(logging.DEBUG):
        first = Client().post(callback_path(raw), body, content_type="application/json")
    assert first.status_code == 503
    assert not TaskEvent.objects.filter(task=task).exists()  # nothing half-written
    assert all(raw not in r.getMessage() for r in caplog.records)
    # Evolink's retry: recorded and applied
    again = Client().post(callback_path(raw), body, content_type="application/json")
    assert again.status_code == 200
    task.refresh_from_db()
    assert task.status == Status.COMPLETED and task.images.count() == 1
