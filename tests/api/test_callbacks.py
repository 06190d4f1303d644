"""The callback receiver: token, recording first, hint + re-fetch, duplicates, stale."""

from __future__ import annotations

import json
import logging

import pytest
import responses
from django.db import connection
from django.test import Client
from django.utils import timezone

from django_evolink.api import callbacks
from django_evolink.api.callbacks import CallbackView, redact_headers
from django_evolink.core import services
from django_evolink.models import EventOutcome, EventSource, ImageTask, TaskEvent
from tests.support.api import callback_path, make_task, set_evolink, task_url
from tests.support.evolink_samples import TASK_ID, error_answer, result_urls, task_answer

pytest_plugins = ["tests.support.api_fixtures"]
pytestmark = [pytest.mark.django_db]


@pytest.fixture
def client():
    return Client(enforce_csrf_checks=True)  # the receiver is CSRF-exempt


def post(client, raw, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(callback_path(raw), data, content_type="application/json", **extra)


def events(task, source=EventSource.CALLBACK):
    return list(task.events.filter(source=source).order_by("received_at", "id"))


@pytest.fixture
def evolink():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def fetches(rsps):
    return [c for c in rsps.calls if c.request.method == "GET"]


# ------------------------------------------------------------------- authentication


def test_only_post_is_allowed(client):
    task, raw = make_task()
    assert client.get(callback_path(raw)).status_code == 405
    assert client.put(callback_path(raw)).status_code == 405
    assert not TaskEvent.objects.exists()


@pytest.mark.parametrize("token", ["wrong-token", "x" * 300, "a"])
def test_an_unknown_token_answers_404_and_records_nothing(client, evolink, token):
    task, _ = make_task()
    response = post(client, token, task_answer(status="completed"))
    assert response.status_code == 404
    assert not TaskEvent.objects.exists()
    task.refresh_from_db()
    assert task.status == "processing" and task.callback_received_at is None
    assert len(evolink.calls) == 0


def test_a_task_without_a_token_cannot_be_reached(client):
    task, _ = make_task(callback_token_hash="")
    assert post(client, "any-token-at-all", {}).status_code == 404
    assert client.post("/evolink/callback//").status_code == 404
    assert not TaskEvent.objects.exists()


def test_the_token_is_looked_up_by_its_hash(client, evolink):
    task, raw = make_task()
    other, other_raw = make_task(evolink_id="task-other")
    evolink.get(task_url(), json=task_answer(status="processing", progress=60))
    assert post(client, raw, task_answer(status="processing")).status_code == 200
    assert post(client, task.callback_token_hash, task_answer()).status_code == 404
    assert other.events.count() == 0 and task.events.count() == 2


def test_the_view_is_csrf_exempt_and_not_atomic():
    view = CallbackView.as_view()
    assert view.csrf_exempt is True
    assert "default" in view._non_atomic_requests


# ------------------------------------------------------------------- recording


def test_the_delivery_is_recorded_with_redacted_headers_and_address(client, evolink):
    task, raw = make_task()
    evolink.get(task_url(), json=task_answer(status="processing", progress=70))
    response = post(
        client, raw, task_answer(status="processing", progress=70),
        HTTP_AUTHORIZATION="Bearer sk-evo-abcdef0123456789", HTTP_COOKIE="sessionid=abc",
        HTTP_X_API_KEY="k", HTTP_X_WEBHOOK_SECRET="s", HTTP_X_REQUEST_ID="req-1",
        HTTP_USER_AGENT="Evolink", REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 200
    delivery = events(task)[0]
    assert delivery.payload == task_answer(status="processing", progress=70)
    assert delivery.remote_addr == "203.0.113.9"
    headers = delivery.headers
    for name in ("Authorization", "Cookie", "X-Api-Key", "X-Webhook-Secret"):
        assert headers[name] == "[redacted]"
    assert headers["X-Request-Id"] == "req-1" and headers["User-Agent"] == "Evolink"
    assert "sk-evo-abcdef" not in json.dumps(headers)


def test_redact_headers_scrubs_keys_in_innocent_headers():
    clean = redact_headers({"X-Note": "key sk-evo-secret123 here", "X-Auth-Token": "t"})
    assert clean == {"X-Note": "key sk-evo-[redacted] here", "X-Auth-Token": "[redacted]"}


def test_the_delivery_survives_a_failure_while_applying(client, evolink, monkeypatch):
    task, raw = make_task()
    evolink.get(task_url(), json=task_answer(status="completed"))

    def boom(*args, **kwargs):
        raise RuntimeError("database on fire")

    # the re-fetched answer is applied by the refresh path (core.services)
    monkeypatch.setattr(services, "apply_payload", boom)
    before = timezone.now()
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 503
    (delivery,) = events(task)
    assert delivery.outcome == EventOutcome.ERROR
    assert "RuntimeError: database on fire" in delivery.note
    task.refresh_from_db()
    assert task.status == "processing" and task.next_poll_at >= before


@pytest.mark.django_db(transaction=True)
def test_the_delivery_survives_under_atomic_requests(client, settings, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    set_evolink(settings, TRUST_CALLBACK_BODY=True)
    task, raw = make_task()

    def boom(*args, **kwargs):
        raise RuntimeError("apply failed")

    monkeypatch.setattr(callbacks, "apply_payload", boom)
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 503
    assert TaskEvent.objects.filter(task=task, outcome=EventOutcome.ERROR).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_delivery_is_committed_before_evolink_is_asked_under_atomic_requests(
    client, settings, monkeypatch, evolink
):
    """With the site's ATOMIC_REQUESTS on, the re-fetch mode still commits the delivery
    before the HTTP call to Evolink (no transaction is held open across it)."""
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    task, raw = make_task()
    seen = []

    def answer(request):
        seen.append((connection.in_atomic_block,
                     TaskEvent.objects.filter(task=task, source=EventSource.CALLBACK).count()))
        return 200, {}, json.dumps(task_answer(status="processing", progress=60))

    evolink.add_callback(responses.GET, task_url(), callback=answer)
    assert post(client, raw, task_answer(status="processing", progress=60)).status_code == 200
    assert seen == [(False, 1)]


def test_the_token_is_not_logged(client, caplog):
    task, raw = make_task()
    with caplog.at_level(logging.DEBUG):
        assert post(client, raw, "not json").status_code == 400
        assert post(client, raw + "x", {}).status_code == 404
    assert caplog.records
    assert all(raw not in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------- bad bodies


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ("not json at all", EventOutcome.MALFORMED),
        (b"\xff\xfe", EventOutcome.MALFORMED),
        ([1, 2, 3], EventOutcome.MALFORMED),
        ({"status": "completed"}, EventOutcome.MALFORMED),
        ({"id": TASK_ID}, EventOutcome.MALFORMED),
        ({**task_answer(status="processing"), "progress": "lots"}, EventOutcome.MALFORMED),
        (task_answer(id="task-unified-someone-else", status="completed"),
         EventOutcome.WRONG_TASK),
    ],
)
def test_a_body_that_is_not_a_task_object_for_this_task_answers_400(client, evolink, body,
                                                                     outcome):
    task, raw = make_task()
    response = post(client, raw, body)
    assert response.status_code == 400
    (delivery,) = events(task)
    assert delivery.outcome == outcome and delivery.changed is False
    task.refresh_from_db()
    assert task.status == "processing" and task.callback_received_at is None
    assert not task.images.exists()
    assert len(evolink.calls) == 0


@pytest.mark.parametrize("trust", [False, True])
@pytest.mark.parametrize("status", ["queued", "pending"])
def test_a_callback_before_the_creates_answer_is_recorded_answers_503_to_be_resent(
        client, evolink, settings, trust, status):
    # Evolink finished the task before the answer to its create was recorded here (a
    # stalled submit): the id cannot be judged yet, so Evolink is asked to send it again.
    set_evolink(settings, TRUST_CALLBACK_BODY=trust)
    task, raw = make_task(status=status, evolink_id=None)
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert response.json() == {"detail": callbacks.EARLY_DETAIL}
    (delivery,) = events(task)
    assert delivery.outcome == EventOutcome.RECEIVED and delivery.changed is False
    assert delivery.note.endswith(callbacks.EARLY_NOTE)
    assert delivery.payload == task_answer(status="completed")
    task.refresh_from_db()
    assert task.status == status and task.evolink_id is None
    assert task.callback_received_at is None and not task.images.exists()
    assert len(evolink.calls) == 0


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_callback_for_a_final_task_without_an_id_is_about_another_task(client, evolink,
                                                                         status):
    # e.g. a create whose answer was lost (outcome_unknown): nothing will give it an id
    task, raw = make_task(status=status, evolink_id=None)
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 400 and response.json()["outcome"] == "wrong_task"
    (delivery,) = events(task)
    assert delivery.outcome == EventOutcome.WRONG_TASK
    assert len(evolink.calls) == 0


def test_a_malformed_body_before_the_creates_answer_still_answers_400(client, evolink):
    task, raw = make_task(status="pending", evolink_id=None)
    response = post(client, raw, {"status": "completed"})
    assert response.status_code == 400 and response.json()["outcome"] == "malformed"
    assert events(task)[0].outcome == EventOutcome.MALFORMED


@pytest.mark.parametrize("trust", [False, True])
def test_a_creates_answer_recorded_after_the_lookup_is_seen_before_answering_503(
        client, evolink, settings, monkeypatch, trust):
    # The lookup read the row before the create's answer gave it its id; the row is read
    # again, and the delivery is then handled as any other.
    set_evolink(settings, TRUST_CALLBACK_BODY=trust)
    task, raw = make_task(status="pending")
    looked_up = CallbackView.validate_request

    def before_the_answer(self, request, token, record=None):
        found = looked_up(self, request, token, record)
        found.evolink_id, found.status = None, "pending"
        return found

    monkeypatch.setattr(CallbackView, "validate_request", before_the_answer)
    evolink.get(task_url(), json=task_answer(status="completed"))
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 200 and response.json()["outcome"] == "applied"
    task.refresh_from_db()
    assert task.status == "completed" and task.images.count() == 1
    assert len(fetches(evolink)) == (0 if trust else 1)


# ------------------------------------------------------------------- hint + re-fetch


def test_a_completion_is_verified_by_fetching_the_task(client, evolink):
    task, raw = make_task()
    evolink.get(task_url(), json=task_answer(status="completed"))
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 200
    assert response.json() == {"received": True, "outcome": "applied"}
    task.refresh_from_db()
    assert task.status == "completed" and task.callback_received_at is not None
    assert [i.source_url for i in task.images.all()] == result_urls()
    delivery, applied = events(task)
    assert delivery.payload == task_answer(status="completed")
    assert delivery.changed is False and delivery.status_after == "completed"
    assert delivery.note.endswith("verified by fetching the task (applied)")
    assert applied.outcome == EventOutcome.APPLIED and applied.changed is True
    assert f"callback event {delivery.pk}" in applied.note
    assert len(fetches(evolink)) == 1


def test_a_refetch_that_disagrees_with_the_body_wins(client, evolink):
    task, raw = make_task(status="pending")
    evolink.get(task_url(), json=task_answer(status="processing", progress=30))
    forged = task_answer(status="completed", results=["https://evil.example/injected.png"])
    assert post(client, raw, forged).status_code == 200
    task.refresh_from_db()
    assert task.status == "processing" and task.progress == 30
    assert not task.images.exists()
    delivery, applied = events(task)
    assert delivery.payload["results"] == ["https://evil.example/injected.png"]
    assert applied.payload["status"] == "processing"


def test_an_unknown_status_is_accepted_recorded_and_verified(client, evolink):
    task, raw = make_task()
    evolink.get(task_url(), json=task_answer(status="processing", progress=80))
    response = post(client, raw, {**task_answer(), "status": "teleported"})
    assert response.status_code == 200
    delivery, applied = events(task)
    assert delivery.outcome == EventOutcome.UNKNOWN_STATUS
    task.refresh_from_db()
    assert task.status == "processing" and task.progress == 80


def test_four_identical_deliveries_change_the_task_once(client, evolink):
    task, raw = make_task()
    evolink.get(task_url(), json=task_answer(status="completed"))
    body = task_answer(status="completed")
    answers = [post(client, raw, body) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["outcome"] for a in answers] == ["applied"] + ["unchanged"] * 3
    task.refresh_from_db()
    assert task.status == "completed" and task.images.count() == 1
    assert len(fetches(evolink)) == 1  # a final task is not fetched again
    assert task.events.filter(changed=True).count() == 1
    assert len(events(task)) == 5


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize("late", ["processing", "pending", "completed", "failed"])
def test_stale_deliveries_after_a_final_status_change_nothing(client, evolink, final, late):
    task, raw = make_task(status=final, completed_at=timezone.now())
    before = ImageTask.objects.values().get(pk=task.pk)
    response = post(client, raw, task_answer(status=late))
    assert response.status_code == 200
    expected = EventOutcome.UNCHANGED if late == final else EventOutcome.STALE
    assert response.json()["outcome"] == expected
    after = ImageTask.objects.values().get(pk=task.pk)
    changed = {k for k in before if before[k] != after[k]}
    assert changed <= {"callback_received_at", "updated_at"}
    assert len(evolink.calls) == 0
    assert events(task)[0].outcome == expected


def test_an_out_of_order_progress_callback_is_stale(client, evolink):
    task, raw = make_task(status="processing", progress=60)
    evolink.get(task_url(), json=task_answer(status="processing", progress=60))
    response = post(client, raw, task_answer(status="pending"))
    assert response.status_code == 200
    assert events(task)[0].outcome == EventOutcome.STALE
    task.refresh_from_db()
    assert task.status == "processing" and task.progress == 60


def test_a_failed_refetch_answers_503_and_makes_the_task_due(client, evolink, settings):
    set_evolink(settings, MAX_RETRIES=0)
    task, raw = make_task()
    evolink.get(task_url(), status=503, json={"error": {"type": "service_unavailable_error",
                                                        "message": "down"}})
    before = timezone.now()
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 503
    (delivery,) = events(task)
    assert delivery.outcome == EventOutcome.ERROR and "re-fetch failed" in delivery.note
    task.refresh_from_db()
    assert task.status == "processing" and task.next_poll_at >= before


def test_a_refetch_that_evolink_answers_404_fails_the_task_like_a_refresh(client, evolink,
                                                                         settings):
    """The re-fetch is the refresh path itself: Evolink no longer knowing the task marks
    it failed with ``not_found_error`` (it used to answer 503 and leave it processing, so
    Evolink retried the callback for a task nobody could ever complete)."""
    set_evolink(settings, MAX_RETRIES=0)
    task, raw = make_task()
    evolink.get(task_url(), status=404, json=error_answer(404))
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 200
    task.refresh_from_db()
    assert (task.status, task.error_code) == ("failed", "not_found_error")
    delivery, verdict = events(task)
    assert delivery.outcome == EventOutcome.UNCHANGED and "verified by fetching" in delivery.note
    assert verdict.changed is True and verdict.status_after == "failed"


def test_a_late_delivery_for_a_final_task_is_stamped_not_applied(client, evolink):
    task, raw = make_task(status="completed", progress=100)
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 200 and response.json()["outcome"] == "unchanged"
    task.refresh_from_db()
    assert task.status == "completed" and task.callback_received_at is not None
    assert len(evolink.calls) == 0


# ------------------------------------------------------------------- trusted bodies


def test_trusted_bodies_are_applied_without_fetching(client, evolink, settings):
    set_evolink(settings, TRUST_CALLBACK_BODY=True)
    task, raw = make_task()
    response = post(client, raw, task_answer(status="completed"))
    assert response.status_code == 200 and response.json()["outcome"] == "applied"
    task.refresh_from_db()
    assert task.status == "completed" and task.images.count() == 1
    (delivery,) = events(task)
    assert delivery.changed is True and delivery.outcome == EventOutcome.APPLIED
    assert len(evolink.calls) == 0
    # duplicates and stale deliveries: 200, nothing changes
    assert post(client, raw, task_answer(status="completed")).json()["outcome"] == "unchanged"
    assert post(client, raw, task_answer(status="processing")).json()["outcome"] == "stale"
    assert task.images.count() == 1


def test_trusted_bodies_for_another_task_answer_400(client, settings):
    set_evolink(settings, TRUST_CALLBACK_BODY=True)
    task, raw = make_task()
    assert post(client, raw, task_answer(id="task-x", status="completed")).status_code == 400
    task.refresh_from_db()
    assert task.status == "processing"

