"""services.create_task / submit_task / refresh_task against canned Evolink answers."""

import json

import pytest
import requests
import responses

from django_evolink import services
from django_evolink.core.tokens import hash_token
from django_evolink.exceptions import (
    EvolinkAuthenticationError,
    EvolinkConnectionError,
    EvolinkInsufficientQuotaError,
    EvolinkInvalidRequestError,
    EvolinkMalformedResponseError,
    EvolinkOutcomeUnknownError,
    EvolinkRateLimitError,
    EvolinkValidationError,
)
from django_evolink.models import ImageTask, Status
from tests.support.evolink_samples import API_KEY, TASK_ID, error_answer, result_urls, task_answer

pytestmark = pytest.mark.django_db

BASE = "https://api.evolink.test"
CREATE = f"{BASE}/v1/images/generations"
GET = f"{BASE}/v1/tasks/{TASK_ID}"
URLS = ["https://example.com/a.png"]


@pytest.fixture
def rsps():
    with responses.RequestsMock() as r:
        yield r


def test_create_task_saves_submits_and_applies(rsps, user):
    rsps.post(CREATE, json=task_answer())
    task = services.create_task(prompt="a cat", image_urls=URLS, n=2, user=user)
    task.refresh_from_db()
    assert task.status == Status.PENDING and task.evolink_id == TASK_ID
    assert task.user == user and task.n == 2 and task.model == "wan2.5-image-to-image"
    sent = json.loads(rsps.calls[0].request.body)
    assert sent == {"model": "wan2.5-image-to-image", "prompt": "a cat", "image_urls": URLS, "n": 2}
    assert list(task.events.values_list("source", "outcome")) == [("submit", "applied")]


def test_callback_url_sent_with_a_token_stored_only_as_hash(rsps, settings):
    settings.EVOLINK = {**settings.EVOLINK, "CALLBACK_BASE_URL": "https://www.example.com"}
    rsps.post(CREATE, json=task_answer())
    task = services.create_task(prompt="a cat", image_urls=URLS)
    sent = json.loads(rsps.calls[0].request.body)
    prefix = "https://www.example.com/evolink/callback/"
    assert sent["callback_url"].startswith(prefix)
    token = sent["callback_url"][len(prefix):].rstrip("/")
    assert len(token) >= 22  # >= 128 bits in urlsafe base64
    task.refresh_from_db()
    assert task.callback_token_hash == hash_token(token)
    assert token not in json.dumps(list(task.events.values("payload", "note")), default=str)


def test_invalid_input_saves_and_sends_nothing(rsps):
    with pytest.raises(EvolinkValidationError) as info:
        services.create_task(prompt="", image_urls=URLS * 3, n=5)
    assert set(info.value.errors) == {"prompt", "image_urls", "n"}
    assert info.value.errors["image_urls"] == ["At most 2 images for wan2.5-image-to-image."]
    assert ImageTask.objects.count() == 0 and len(rsps.calls) == 0


@pytest.mark.parametrize(
    ("status", "exc_type", "code"),
    [
        (400, EvolinkInvalidRequestError, "invalid_request_error"),
        (401, EvolinkAuthenticationError, "authentication_error"),
        (402, EvolinkInsufficientQuotaError, "insufficient_quota_error"),
    ],
)
def test_refusal_marks_failed_and_raises_typed(rsps, status, exc_type, code):
    rsps.post(CREATE, status=status, json=error_answer(status, code, "nope", param="prompt"))
    with pytest.raises(exc_type) as info:
        services.create_task(prompt="a cat", image_urls=URLS)
    task = info.value.task
    task.refresh_from_db()
    assert task.status == Status.FAILED and task.error_code == code
    assert "nope" in task.error_message and task.evolink_id is None
    assert task.events.get().outcome == "applied"
    assert len(rsps.calls) == 1


def test_rate_limited_after_retries_keeps_retry_after(rsps, settings):
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 1}
    rsps.post(CREATE, status=429, json=error_answer(429, "rate_limit_error", "slow down"),
              headers={"Retry-After": "7"})
    with pytest.raises(EvolinkRateLimitError) as info:
        services.create_task(prompt="a cat", image_urls=URLS)
    assert info.value.retry_after == 7
    assert info.value.task.status == Status.FAILED
    assert len(rsps.calls) == 2


def test_lost_answer_is_never_resent(rsps):
    rsps.post(CREATE, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(EvolinkOutcomeUnknownError) as info:
        services.create_task(prompt="a cat", image_urls=URLS)
    task = ImageTask.objects.get()
    assert task.status == Status.FAILED and task.error_code == "outcome_unknown"
    assert "not sent again" in task.error_message
    assert info.value.task.pk == task.pk
    # a second submit attempt of the same task sends nothing
    services.submit_task(task)
    assert len(rsps.calls) == 1


def test_submit_runs_once_even_when_called_twice(rsps):
    rsps.post(CREATE, json=task_answer())
    task = ImageTask.objects.create(model="wan2.5-image-to-image", prompt="p", image_urls=URLS)
    services.submit_task(task)
    services.submit_task(ImageTask.objects.get(pk=task.pk))
    assert len(rsps.calls) == 1


def test_connection_refused_marks_failed(rsps, settings):
    settings.EVOLINK = {**settings.EVOLINK, "MAX_RETRIES": 0}
    rsps.post(CREATE, body=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(EvolinkConnectionError):
        services.create_task(prompt="a cat", image_urls=URLS)
    assert ImageTask.objects.get().error_code == "connection_error"


def test_malformed_create_answer_is_outcome_unknown(rsps):
    rsps.post(CREATE, json={"id": TASK_ID, "status": "weird"})
    with pytest.raises(EvolinkMalformedResponseError):
        services.create_task(prompt="a cat", image_urls=URLS)
    task = ImageTask.objects.get()
    assert task.status == Status.FAILED and task.error_code == "outcome_unknown"


def test_async_submit_only_saves(rsps, settings, django_capture_on_commit_callbacks, monkeypatch):
    settings.EVOLINK = {**settings.EVOLINK, "ASYNC_SUBMIT": True}
    enqueued = []
    monkeypatch.setattr("django_evolink.background.queue.enqueue_submit", enqueued.append)
    with django_capture_on_commit_callbacks(execute=True):
        task = services.create_task(prompt="a cat", image_urls=URLS)
    assert task.status == Status.QUEUED and enqueued == [task.pk] and len(rsps.calls) == 0


def test_refresh_applies_the_answer(rsps):
    rsps.post(CREATE, json=task_answer())
    task = services.create_task(prompt="a cat", image_urls=URLS)
    rsps.get(GET, json=task_answer(status="completed", progress=100, results=result_urls(n=1)))
    services.refresh_task(task)
    assert task.status == Status.COMPLETED
    assert task.images.count() == 1
    assert task.events.filter(source="refresh").count() == 1


def test_refresh_of_a_task_evolink_forgot_fails_it(rsps):
    rsps.post(CREATE, json=task_answer())
    task = services.create_task(prompt="a cat", image_urls=URLS)
    rsps.get(GET, status=404, json=error_answer(404, "not_found_error", "task not found"))
    services.refresh_task(task)
    task.refresh_from_db()
    assert task.status == Status.FAILED and task.error_code == "not_found_error"


def test_refresh_of_unsubmitted_task_sends_nothing(rsps):
    task = ImageTask.objects.create(model="wan2.5-image-to-image", prompt="p", image_urls=URLS)
    assert services.refresh_task(task) is task
    assert len(rsps.calls) == 0


def test_api_key_never_in_events_or_errors(rsps, caplog):
    caplog.set_level("DEBUG")
    rsps.post(CREATE, status=401, json=error_answer(401, "authentication_error",
                                                    f"bad key {API_KEY}"))
    with pytest.raises(EvolinkAuthenticationError) as info:
        services.create_task(prompt="a cat", image_urls=URLS)
    task = info.value.task
    dumped = json.dumps(list(task.events.values()), default=str)
    assert API_KEY not in dumped and API_KEY not in task.error_message
    assert API_KEY not in str(info.value) and API_KEY not in caplog.text


# ------------------------------------------------------------ the submit's fast path --
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def _queued_claimed(**fields):
    from django.utils import timezone

    return ImageTask.objects.create(model="wan2.5-image-to-image", prompt="a cat",
                                    image_urls=URLS, n=1, submit_started_at=timezone.now(),
                                    **fields)


def test_a_create_writes_the_row_then_one_guarded_update_and_its_event(
        rsps, user, django_capture_on_commit_callbacks):
    """Recorded first (the claimed row's INSERT before the POST), then the answer: one
    UPDATE and the event's INSERT, nothing read or locked; signals once, after commit."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_evolink import signals

    seen = []

    def receiver(sender, task, old_status, new_status, **kwargs):
        seen.append((old_status, new_status, task.evolink_id))

    rsps.post(CREATE, json=task_answer())
    signals.task_status_changed.connect(receiver)
    try:
        with CaptureQueriesContext(connection) as queries, \
                django_capture_on_commit_callbacks(execute=True):
            task = services.create_task(prompt="a cat", image_urls=URLS, n=1, user=user)
    finally:
        signals.task_status_changed.disconnect(receiver)
    sql = [q["sql"] for q in queries.captured_queries
           if not q["sql"].upper().startswith(CONTROL)]
    assert not any("FOR UPDATE" in s or s.startswith("SELECT") for s in sql), sql
    assert sql[0].startswith('INSERT INTO "django_evolink_imagetask"'), sql
    if connection.vendor == "postgresql":  # one statement: UPDATE, event INSERT
        assert len(sql) == 2 and sql[1].startswith(
            'WITH updated AS (UPDATE "django_evolink_imagetask"'), sql
        assert 'INSERT INTO "django_evolink_taskevent"' in sql[1]
        assert "pg_notify" not in sql[1]  # nobody watches the new task: nothing announced
    else:
        kinds = [s.split()[0].upper() + " " + s.split('"')[1] for s in sql[1:]]
        assert kinds == ["UPDATE django_evolink_imagetask", "INSERT django_evolink_taskevent"]
    assert seen == [(Status.QUEUED, Status.PENDING, TASK_ID)]
    stored = ImageTask.objects.get(pk=task.pk)
    for name in ("status", "evolink_id", "submitted_at", "next_poll_at", "credits_reserved",
                 "estimated_time", "updated_at", "submit_started_at"):
        assert getattr(task, name) == getattr(stored, name), name
    assert stored.submitted_at is not None and stored.next_poll_at is not None
    event = stored.events.get()
    assert (event.source, event.outcome, event.changed, event.status_before,
            event.status_after) == ("submit", "applied", True, "queued", "pending")


def test_a_submit_answer_for_a_row_changed_meanwhile_takes_the_general_path():
    """The guard holds only for the state the submit left: a task failed meanwhile (e.g.
    timed out by the sweep) keeps its status; the general path records the answer as stale
    (and keeps Evolink's id, so the Evolink task can be found)."""
    from django_evolink.core import transitions

    task = _queued_claimed()
    transitions.fail_task(task.pk, code="task_timeout", message="gave up")
    result = transitions.apply_submit_answer(task, task_answer())
    assert result.outcome == "stale" and not result.changed
    stored = ImageTask.objects.get(pk=task.pk)
    assert stored.status == Status.FAILED and stored.evolink_id == TASK_ID
    assert task.status == Status.FAILED  # the caller's instance shows the row
    assert list(stored.events.order_by("received_at", "id").values_list(
        "source", "outcome")) == [("system", "applied"), ("submit", "stale")]


def test_a_submit_answer_with_an_evolink_id_already_used_is_recorded_once():
    from django_evolink.core import transitions

    _queued_claimed(evolink_id=TASK_ID, status=Status.PENDING)
    task = _queued_claimed()
    result = transitions.apply_submit_answer(task, task_answer())
    assert result.outcome == "wrong_task"
    stored = ImageTask.objects.get(pk=task.pk)
    assert stored.status == Status.QUEUED and stored.evolink_id is None
    assert list(stored.events.values_list("outcome", flat=True)) == ["wrong_task"]


@pytest.mark.parametrize("answer", [
    lambda _id: {"object": "image.generation.task", "status": "pending"},  # no task id
    lambda _id: task_answer(_id, status="completed", results=["https://files.evolink.test/r.png"]),
])
def test_a_submit_answer_that_is_not_a_plain_acceptance_takes_the_general_path(answer):
    """Compared with what the general path does to a twin task."""
    from django_evolink.core import transitions

    task = _queued_claimed()
    expected = transitions.apply_payload(_queued_claimed(), answer(TASK_ID), source="submit")
    result = transitions.apply_submit_answer(task, answer(TASK_ID[:-1] + "x"))
    assert result.outcome == expected.outcome
    assert ImageTask.objects.get(pk=task.pk).status == expected.task.status
    assert task.images.count() == expected.task.images.count()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("watched", [True, False])
def test_postgres_submit_answer_statement_stores_the_event_and_notifies_a_watched_task(
        rsps, user, watched):
    """The single statement's parts: the row and the event (every column as the ORM would
    store it); the NOTIFY an event stream waits for, delivered at commit, only when the
    task is watched (here: marked by a viewer while the create was on its way)."""
    import psycopg
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement submit write is PostgreSQL's")
    from django_evolink.core import attention, live

    settings_dict = connection.settings_dict
    listener = psycopg.connect(host=settings_dict["HOST"], port=settings_dict["PORT"] or 5432,
                               user=settings_dict["USER"], dbname=settings_dict["NAME"],
                               autocommit=True)
    try:
        listener.execute(f"LISTEN {live.CHANNEL}")

        def answer(request):  # the claimed row is committed before the POST
            if watched:
                attention.watch(ImageTask.objects.get())
            return 200, {}, json.dumps(task_answer())

        rsps.add_callback(responses.POST, CREATE, callback=answer,
                          content_type="application/json")
        task = services.create_task(prompt="a cat", image_urls=URLS, n=1, user=user)
        heard = [n.payload for n in listener.notifies(timeout=1.0)]
    finally:
        listener.close()
    assert heard == ([str(task.pk)] if watched else [])
    event = ImageTask.objects.get(pk=task.pk).events.get()
    assert event.payload == task_answer() and event.headers == {}
    assert event.remote_addr is None and event.note == "" and event.received_at is not None
    assert (event.outcome, event.changed, event.status_after) == ("applied", True, "pending")
