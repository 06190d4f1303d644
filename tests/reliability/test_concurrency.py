"""Real concurrency on PostgreSQL: disjoint claims, callback/poll races."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection, connections
from django.utils import timezone

from django_evolink import signals
from django_evolink.background import sweep
from django_evolink.core.transitions import apply_payload
from django_evolink.evolink.client import get_client
from django_evolink.models import EventSource, GeneratedImage, ImageTask, Status
from tests.support.background import db_task, emulated_task

pg_only = pytest.mark.skipif(connection.vendor != "postgresql",
                             reason="needs PostgreSQL row locks (SELECT ... FOR UPDATE SKIP "
                                    "LOCKED) and real concurrent connections")
pytestmark = [pytest.mark.postgres, pytest.mark.slow, pg_only,
              pytest.mark.django_db(transaction=True)]


def _threads(n, target):
    errors = []

    def run(i):
        try:
            target(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_concurrent_sweeps_claim_disjoint_sets(settings, evolink_emulator):
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0, "POLL_BATCH_SIZE": 50,
                        # a task polled once is not due again during the test: any
                        # second poll would be a double claim
                        "POLL_MIN_INTERVAL": 3600.0, "POLL_MAX_INTERVAL": 7200.0,
                        "POLL_MAX_TASKS_PER_SWEEP": 1000, "POLL_CONCURRENCY": 4}
    emu = evolink_emulator
    remotes = [emulated_task(emu, duration=100_000) for _ in range(1000)]
    now = timezone.now()
    ImageTask.objects.bulk_create([
        ImageTask(evolink_id=r.id, model="wan2.5-image-to-image", prompt="p",
                  image_urls=["https://example.com/a.png"], status=Status.PROCESSING,
                  submitted_at=now, next_poll_at=now) for r in remotes
    ])
    claimed = Counter()

    def one(_i):
        claimed.update([sweep.run_sweep()["claimed"]])

    _threads(6, one)
    gets = Counter(r.path for r in emu.requests.filter("GET", "/v1/tasks/*"))
    assert len(gets) == 1000 and max(gets.values()) == 1  # zero double polls
    assert sum(k * v for k, v in claimed.items()) == 1000
    assert not ImageTask.objects.filter(lease_token__isnull=False).exists()


def test_callback_and_poll_racing_complete_once(settings, evolink_emulator):
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0}
    emu = evolink_emulator
    completed = []
    signals.task_completed.connect(lambda task, **kw: completed.append(task.pk), weak=False,
                                   dispatch_uid="t-race")
    settings.Q_CLUSTER = {**settings.Q_CLUSTER}
    try:
        for _ in range(100):
            remote = emulated_task(emu, duration=0.01, n=2)
            emu.clock.advance(1)
            body = get_client().get_task(remote.id)
            task = db_task(remote.id, status=Status.PROCESSING)
            barrier = threading.Barrier(2)

            def race(i, task=task, body=body, barrier=barrier):
                barrier.wait()
                if i == 0:
                    apply_payload(task.pk, body, source=EventSource.CALLBACK)
                else:
                    sweep.run_sweep(limit=1)

            _threads(2, race)
            task.refresh_from_db()
            assert task.status == Status.COMPLETED
    finally:
        signals.task_completed.disconnect(dispatch_uid="t-race")
    assert len(completed) == 100 and len(set(completed)) == 100
    assert GeneratedImage.objects.count() == 200
