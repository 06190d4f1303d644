"""Fuzzing the callback receiver: malformed bodies never answer 5xx and change nothing.

Every body below reaches a real task's callback URL (valid token). The receiver must
answer 4xx (or 200 for a well-formed delivery of this task), never 5xx; the task must
not change; the delivery must be recorded; the token must not appear in any log line.
The only documented 5xx, 503 when Evolink cannot be asked to confirm a delivery, is
tested in test_callbacks.py and test_reliability_faults.py.
"""

from __future__ import annotations

import json
import logging

import pytest
import responses
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_evolink.models import EventOutcome, EventSource, ImageTask, TaskEvent
from tests.support.api import callback_path, make_task, task_url
from tests.support.evolink_samples import TASK_ID, task_answer

pytestmark = [pytest.mark.django_db]

#: Fields of a task that no malformed delivery may change.
WATCHED = ("status", "progress", "evolink_id", "error_code", "completed_at", "credits_reserved")


def snapshot(task: ImageTask) -> tuple:
    task.refresh_from_db()
    return tuple(getattr(task, f) for f in WATCHED) + (task.images.count(),)


@pytest.fixture
def evolink():
    """Evolink confirms the task is still processing (the re-fetch of a valid hint)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, task_url(), json=task_answer(status="processing", progress=40))
        yield rsps


def post(raw: str, body: bytes, content_type: str = "application/json"):
    return Client().post(callback_path(raw), body, content_type=content_type)


MALFORMED_BODIES = {
    "deeply nested array (RecursionError)": b"[" * 100_000,
    "deeply nested object": b'{"a":' * 50_000,
    "NaN": b'{"id": NaN, "status": "completed"}',
    "Infinity in progress": json.dumps({**task_answer(status="processing")})[:-1].encode()
    + b', "x": Infinity}',
    "number out of float range": (
        b'{"id": "%s", "status": "processing", "progress": 1e999}' % TASK_ID.encode()),
    "escaped NUL in a string": json.dumps(
        {**task_answer(status="processing"), "note": "a\x00b"}).encode(),
    "escaped NUL in a key": b'{"\\u0000": 1}',
    "raw NUL bytes": b"\x00\x00{}",
    "not UTF-8": b"\xff\xfe\xfd",
    "UTF-16 JSON": json.dumps(task_answer(status="completed")).encode("utf-16"),
    "lone surrogate escape": b'{"id": "\\ud800", "status": "completed"}',
    "empty": b"",
    "whitespace": b"   \n",
    "a JSON string": b'"completed"',
    "a JSON number": b"42",
    "null": b"null",
    "an array of task objects": json.dumps([task_answer(status="completed")]).encode(),
    "no id": json.dumps({"status": "completed"}).encode(),
    "id of another type": json.dumps({"id": 12, "status": "completed"}).encode(),
    "huge id": json.dumps({"id": "x" * 10_000, "status": "completed"}).encode(),
    "status of another type": json.dumps({"id": TASK_ID, "status": ["completed"]}).encode(),
    "progress as text": json.dumps({**task_answer(status="processing"), "progress": "99"}).encode(),
    "progress above 100": json.dumps(
        {**task_answer(status="processing"), "progress": 101}).encode(),
    "negative credits": json.dumps(
        {**task_answer(status="processing"), "usage": {"credits_reserved": -1}}).encode(),
    "credits as huge exponent": json.dumps(
        {**task_answer(status="processing"), "usage": {"credits_reserved": "1e999999999"}}
    ).encode(),
    "results not a list": json.dumps(
        {**task_answer(status="completed"), "results": "http://x/a.png"}).encode(),
    "17 results": json.dumps(
        {**task_answer(status="completed"), "results": ["https://x.test/a.png"] * 17}).encode(),
    "javascript: result": json.dumps(
        {**task_answer(status="completed"), "results": ["javascript:alert(1)"]}).encode(),
    "another task's completion": json.dumps(
        task_answer(id="task-unified-9999999999-other", status="completed")).encode(),
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_malformed_bodies_answer_400_record_the_delivery_and_change_nothing(
        evolink, caplog, body):
    task, raw = make_task()
    before = snapshot(task)
    with caplog.at_level(logging.DEBUG):
        response = post(raw, body)
    assert response.status_code == 400, response.content
    assert response.json()["outcome"] in (EventOutcome.MALFORMED, EventOutcome.WRONG_TASK)
    assert snapshot(task) == before
    event = TaskEvent.objects.get(task=task, source=EventSource.CALLBACK)
    assert event.outcome in (EventOutcome.MALFORMED, EventOutcome.WRONG_TASK)
    assert not evolink.calls  # a malformed hint is not even confirmed with Evolink
    assert all(raw not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/xml", "image/png", "application/octet-stream", ""],
)
def test_wrong_content_types_are_judged_by_the_body(evolink, content_type):
    """The receiver reads the raw body whatever the declared type: JSON works, the rest is
    malformed (Evolink sends application/json; nothing is parsed as a form)."""
    task, raw = make_task()
    before = snapshot(task)
    assert post(raw, b"<xml>not json</xml>", content_type).status_code == 400
    assert snapshot(task) == before
    body = json.dumps(task_answer(status="processing", progress=40)).encode()
    assert post(raw, body, content_type).status_code == 200
    assert snapshot(task)[0] == "processing"


def test_a_body_above_the_upload_limit_answers_400_and_is_noted(evolink, settings, caplog):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    task, raw = make_task()
    before = snapshot(task)
    with caplog.at_level(logging.DEBUG):
        response = post(raw, b'{"id": "' + b"a" * (65 * 1024) + b'"}')
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    assert snapshot(task) == before
    event = TaskEvent.objects.get(task=task)
    assert event.outcome == EventOutcome.MALFORMED and event.payload["_too_large"] is True
    assert all(raw not in r.getMessage() for r in caplog.records)


def test_a_ten_megabyte_body_at_the_default_limit_answers_400(evolink):
    task, raw = make_task()
    assert post(raw, b"{" + b" " * (10 * 1024 * 1024) + b"}").status_code == 400
    assert TaskEvent.objects.get(task=task).outcome == EventOutcome.MALFORMED


def test_the_stored_text_of_an_unparsed_body_is_bounded_and_nul_free(evolink):
    task, raw = make_task()
    post(raw, b"\x00" * 50 + b"z" * 20_000)
    stored = TaskEvent.objects.get(task=task).payload["_unparsed_body"]
    assert len(stored) == 10_000 and "\x00" not in stored


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
task_like = st.fixed_dictionaries(
    {"id": st.sampled_from([TASK_ID, "task-unified-0-other", ""]) | st.text(max_size=5),
     "status": st.sampled_from(["pending", "processing", "completed", "failed", "weird"])
     | json_values},
    optional={"progress": json_values, "results": json_values, "usage": json_values,
              "task_info": json_values, "error": json_values},
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=json_values | task_like, as_text=st.booleans())
def test_random_json_never_answers_5xx_nor_moves_the_task_backwards(evolink, body, as_text):
    ImageTask.objects.filter(evolink_id=TASK_ID).delete()  # left by an earlier example
    task, raw = make_task(status="processing")
    before = snapshot(task)
    data = json.dumps(body, allow_nan=True).encode()
    response = post(raw, data, "text/plain" if as_text else "application/json")
    assert response.status_code in (200, 400), response.content
    after = snapshot(task)
    # a delivery is only a hint: the task moves only as far as Evolink's re-fetched
    # answer says (processing, 40 %), never from the body itself
    assert after[0] == "processing" and after[1] in (before[1], 40)
    assert after[-1] == 0
    assert TaskEvent.objects.filter(task=task, source=EventSource.CALLBACK).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="jsonb refuses NUL and NaN")
@pytest.mark.postgres
def test_bodies_postgresql_refuses_are_stored_as_text_on_postgresql(evolink):
    task, raw = make_task()
    for body in (b'{"a": "\\u0000"}', b'{"a": NaN}', b"\x00", b'{"id": "\\ud800"}'):
        assert post(raw, body).status_code == 400
    assert TaskEvent.objects.filter(task=task, outcome=EventOutcome.MALFORMED).count() == 4
