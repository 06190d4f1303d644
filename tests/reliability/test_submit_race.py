"""Two workers submitting one task at once: Evolink gets exactly one create.

Evolink has no idempotency key, so a second create bills a second task. The submit claim
(``services._claim_for_submit``) is a conditional UPDATE on ``status = queued AND
submit_started_at IS NULL``: the first worker sets ``submit_started_at`` before it sends,
and a second one arriving while the first still waits on Evolink's answer (the task is
still ``queued``) finds nothing to claim.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.utils import timezone

from django_evolink.core import services
from django_evolink.evolink.client import get_client
from django_evolink.models import ImageTask, Status
from tests.conftest import make_image_bytes

pg_only = pytest.mark.skipif(connection.vendor != "postgresql",
                             reason="needs PostgreSQL: real concurrent connections and row "
                                    "locks (make test-postgres)")

URLS = ["https://93.184.215.14/a.png"]


def queued_task(**fields) -> ImageTask:
    fields.setdefault("image_urls", URLS)
    return ImageTask.objects.create(model="wan2.5-image-to-image", prompt="p", **fields)


@pytest.mark.django_db
def test_a_task_whose_submission_started_is_not_sent_again(settings, evolink_emulator):
    """The first worker's claim is taken and it is still waiting on Evolink (the task is
    ``queued`` with ``submit_started_at`` set): a second worker sends nothing."""
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": True}
    url = get_client().upload_file(make_image_bytes(), file_name="in.png")["file_url"]
    task = queued_task(image_urls=[url], submit_started_at=timezone.now())
    services.submit_task(task)
    assert evolink_emulator.requests.count("POST", "/v1/images/generations") == 0
    task.refresh_from_db()
    assert task.status == Status.QUEUED and task.evolink_id is None


@pytest.mark.postgres
@pg_only
@pytest.mark.django_db(transaction=True)
def test_two_workers_submitting_one_task_at_once_send_one_create(settings, evolink_emulator):
    """Real threads on real connections, 20 rounds: each round two workers submit the same
    queued task at the same instant while Evolink takes 0.3 s to answer."""
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": True, "MAX_RETRIES": 0}
    evolink_emulator.faults.set_latency("create", 0.3)
    url = get_client().upload_file(make_image_bytes(), file_name="in.png")["file_url"]
    rounds = 20
    for _ in range(rounds):
        task = queued_task(image_urls=[url])
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def submit(task_id=task.pk, barrier=barrier, errors=errors):
            try:
                barrier.wait()
                services.submit_task(ImageTask.objects.get(pk=task_id))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=submit) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        task.refresh_from_db()
        assert task.status == Status.PENDING and task.evolink_id
    creates = evolink_emulator.requests.count("POST", "/v1/images/generations")
    assert creates == rounds  # one per task: never two
