"""The guarantees kept by the performance changes: one transaction per delivery, the
``then`` hook committed with the apply (or nothing), deferred callback records, the
claimed insert of a synchronous create, and the emulator's heap of end times."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import responses
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_evolink.core import live
from django_evolink.core.transitions import apply_payload
from django_evolink.emulator.state import Task, TaskStore
from django_evolink.models import EventOutcome, EventSource, ImageTask, Status, TaskEvent
from tests.support.api import callback_path, make_task, set_evolink, task_url
from tests.support.evolink_samples import task_answer

pytestmark = pytest.mark.django_db


def statements(ctx: CaptureQueriesContext) -> list[str]:
    """The SQL run, without transaction control (BEGIN/SAVEPOINT/RELEASE/COMMIT)."""
    control = ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT", "ROLLBACK")
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].upper().startswith(control)]


def test_then_runs_in_the_apply_and_a_failure_there_commits_nothing_but_the_event():
    task, _raw = make_task(status="pending")
    seen = []

    def then(result):
        seen.append(result.outcome)
        # the row is ours: the same transaction sees the applied status
        assert ImageTask.objects.get(pk=task.pk).status == Status.PROCESSING
        raise RuntimeError("write-back failed")

    with pytest.raises(RuntimeError, match="write-back failed"):
        apply_payload(task, task_answer(status="processing", progress=40),
                      source=EventSource.POLL, then=then)
    assert seen == [EventOutcome.APPLIED]
    task.refresh_from_db()
    assert task.status == Status.PENDING and task.progress == 0  # rolled back as a whole
    (event,) = TaskEvent.objects.filter(task=task)
    assert event.outcome == EventOutcome.ERROR and "write-back failed" in event.note
    assert event.payload["progress"] == 40  # the delivery itself is kept


def test_then_writes_commit_with_the_apply():
    task, _raw = make_task(status="pending")

    def then(result):
        ImageTask.objects.filter(pk=task.pk).update(poll_count=7)

    result = apply_payload(task, task_answer(status="processing", progress=40),
                           source=EventSource.POLL, then=then)
    assert result.outcome == EventOutcome.APPLIED
    task.refresh_from_db()
    assert task.status == Status.PROCESSING and task.poll_count == 7
    assert TaskEvent.objects.get(task=task).outcome == EventOutcome.APPLIED


def test_an_applied_event_is_one_insert_with_its_outcome():
    task, _raw = make_task(status="pending")
    with CaptureQueriesContext(connection) as ctx:
        apply_payload(task, task_answer(status="processing", progress=40),
                      source=EventSource.POLL)
    sql = statements(ctx)
    assert [s.split()[0] for s in sql] == ["SELECT", "UPDATE", "INSERT"], sql
    event = TaskEvent.objects.get(task=task)
    assert (event.outcome, event.status_before, event.status_after) == (
        EventOutcome.APPLIED, "pending", "processing")


def test_a_trusted_callback_is_one_read_and_one_guarded_write(settings):
    # the token lookup reads the row (no lock); the apply writes it only while it still
    # holds what was read, with the delivery's event: on PostgreSQL one statement (the
    # UPDATE's RETURNING feeds the INSERT), elsewhere an UPDATE and an INSERT together
    set_evolink(settings, TRUST_CALLBACK_BODY=True)
    task, raw = make_task()
    body = task_answer(status="processing", progress=60)
    with CaptureQueriesContext(connection) as ctx:
        response = Client().post(callback_path(raw), body, content_type="application/json")
    assert response.status_code == 200
    sql = statements(ctx)
    expected = ["SELECT", "WITH"] if connection.vendor == "postgresql" else [
        "SELECT", "UPDATE", "INSERT"]
    assert [s.split()[0] for s in sql] == expected, sql
    assert "callback_token_hash" in sql[0] and "FOR UPDATE" not in sql[0]
    assert all("FOR UPDATE" not in s for s in sql)
    commits = [q for q in ctx.captured_queries if q["sql"].upper().startswith("COMMIT")]
    assert len(commits) <= 1
    (event,) = TaskEvent.objects.filter(task=task)
    assert event.outcome == EventOutcome.APPLIED and event.note == "callback delivery"
    assert event.headers and event.payload["progress"] == 60
    task.refresh_from_db()
    assert (task.status, task.progress) == ("processing", 60)


def test_a_refused_trusted_callback_is_recorded(settings):
    set_evolink(settings, TRUST_CALLBACK_BODY=True)
    task, raw = make_task()
    response = Client().post(callback_path(raw), {"id": "task-other", "status": "completed"},
                             content_type="application/json")
    assert response.status_code == 400
    (event,) = TaskEvent.objects.filter(task=task)
    assert event.outcome == EventOutcome.WRONG_TASK


def test_task_store_heap_finds_only_due_tasks_and_rechecks_entries():
    store = TaskStore()

    def task(i: str, created: float, duration: float) -> Task:
        return Task(id=i, model="m", prompt="p", n=1, image_urls=[], callback_url=None,
                    created=created, duration=duration, credits_reserved=0.0)

    early, late, done = task("a", 0, 10), task("b", 0, 100), task("c", 0, 5)
    for t in (early, late, done):
        store.add(t)
    done.status = "completed"
    assert store.pop_due(4) == []
    assert store.pop_due(50) == [early]  # the finished one is dropped
    late.duration = 200  # changed after it was added: pushed back, not finished early
    assert store.pop_due(150) == []
    assert store.pop_due(250) == [late]
    store.clear()
    assert store.pop_due(1e9) == []


def test_task_store_finishes_tasks_that_end_together_in_the_order_they_were_created():
    # A frozen (manual) clock gives every task made before an advance the same end time;
    # the tick thread and the clock's change handler must then finish them in one order,
    # creation's, whatever their random ids sort like (test_drop_callbacks depends on it).
    store = TaskStore()
    made = [Task(id=f"task-{suffix}", model="m", prompt="p", n=1, image_urls=[],
                 callback_url=None, created=0, duration=30, credits_reserved=0.0)
            for suffix in ("zz", "mm", "aa", "qq")]
    for t in made:
        store.add(t)
    assert store.pop_due(30) == made


def test_a_refetched_callback_writes_its_outcome_with_the_apply(settings):
    # re-fetch mode: the delivery is committed first, by the token lookup's own statement
    # on PostgreSQL (the lookup, then its INSERT elsewhere), before Evolink is asked;
    # Evolink's answer is then applied to the row as read, with its event and the
    # delivery's outcome, only while the row holds what was read: one statement on
    # PostgreSQL, one transaction elsewhere
    set_evolink(settings, TRUST_CALLBACK_BODY=False)
    task, raw = make_task()
    body = task_answer(status="processing", progress=60)
    recorded_before_the_get = []

    def answer(request):
        recorded_before_the_get.append(TaskEvent.objects.filter(task=task).count())
        return 200, {}, json.dumps(body)

    with responses.RequestsMock() as evolink, CaptureQueriesContext(connection) as ctx:
        evolink.add_callback(responses.GET, task_url(), callback=answer,
                             content_type="application/json")
        response = Client().post(callback_path(raw), body, content_type="application/json")
    assert response.status_code == 200
    assert recorded_before_the_get == [1]
    sql = statements(ctx)
    postgres = connection.vendor == "postgresql"
    expected = ["WITH", "SELECT", "WITH"] if postgres else [
        "SELECT", "INSERT", "SELECT", "UPDATE", "INSERT", "UPDATE"]
    assert [s.split()[0] for s in sql] == expected, sql
    assert "callback_token_hash" in sql[0] and (not postgres or "INSERT INTO" in sql[0])
    assert all("FOR UPDATE" not in s for s in sql)
    delivery, applied = TaskEvent.objects.filter(task=task).order_by("received_at", "id")
    assert delivery.note.startswith("callback delivery") and not delivery.changed
    assert delivery.outcome == EventOutcome.UNCHANGED and delivery.status_after == "processing"
    assert "verified by fetching the task (applied)" in delivery.note and applied.changed
    assert f"callback event {delivery.pk}" in applied.note
    task.refresh_from_db()
    assert task.progress == 60


def test_a_refetched_answer_for_a_row_changed_meanwhile_is_applied_under_lock(settings):
    # the row changes while Evolink is asked: the guarded write fails, the locked path
    # merges the answer again and still writes the delivery's outcome with it
    set_evolink(settings, TRUST_CALLBACK_BODY=False)
    task, raw = make_task()
    body = task_answer(status="processing", progress=60)

    def answer(request):
        ImageTask.objects.filter(pk=task.pk).update(progress=80)  # a poll, meanwhile
        return 200, {}, json.dumps(body)

    with responses.RequestsMock() as evolink:
        evolink.add_callback(responses.GET, task_url(), callback=answer,
                             content_type="application/json")
        response = Client().post(callback_path(raw), body, content_type="application/json")
    # applied: the answer's usage fields are new to the task, its progress is not
    assert response.status_code == 200 and response.json()["outcome"] == "applied"
    task.refresh_from_db()
    assert task.progress == 80 and task.estimated_time == body["task_info"]["estimated_time"]
    delivery, applied = TaskEvent.objects.filter(task=task).order_by("received_at", "id")
    assert applied.outcome == EventOutcome.APPLIED and delivery.status_after == "processing"
    assert delivery.note.endswith("verified by fetching the task (applied)")


def test_a_delivery_for_a_final_task_is_recorded_by_the_write_that_stamps_it(settings):
    # re-fetch mode, the task already final: nothing is fetched; the token lookup stores
    # nothing (its INSERT skips a final task); the delivery, with its outcome, and the
    # task's arrival stamp are one statement on PostgreSQL (one transaction elsewhere)
    set_evolink(settings, TRUST_CALLBACK_BODY=False)
    task, raw = make_task(status="completed", completed_at=timezone.now())
    body = task_answer(status="processing", progress=60)
    with responses.RequestsMock() as evolink, CaptureQueriesContext(connection) as ctx:
        response = Client().post(callback_path(raw), body, content_type="application/json")
        assert not evolink.calls
    assert response.status_code == 200 and response.json()["outcome"] == "stale"
    sql = statements(ctx)
    expected = ["WITH", "WITH"] if connection.vendor == "postgresql" else [
        "SELECT", "UPDATE", "INSERT"]
    assert [s.split()[0] for s in sql] == expected, sql
    commits = [q for q in ctx.captured_queries if q["sql"].upper().startswith("COMMIT")]
    assert len(commits) <= 1
    (delivery,) = TaskEvent.objects.filter(task=task)
    assert (delivery.outcome, delivery.changed, delivery.status_before,
            delivery.status_after) == ("stale", False, "completed", "completed")
    assert delivery.note == "callback delivery\nthe task is already final; not re-fetched"
    assert delivery.payload["progress"] == 60 and delivery.headers
    task.refresh_from_db()
    assert task.status == "completed" and task.callback_received_at is not None


@pytest.mark.parametrize("watched", [True, False])
def test_a_change_is_announced_only_while_the_task_is_watched(
    watched, monkeypatch, django_capture_on_commit_callbacks
):
    task, _raw = make_task(status="pending")
    if watched:
        ImageTask.objects.filter(pk=task.pk).update(
            watched_until=timezone.now() + timedelta(seconds=30))
    published = []
    monkeypatch.setattr(live, "publish", published.append)
    monkeypatch.setattr(live, "publish_many", published.extend)
    with django_capture_on_commit_callbacks(execute=True):
        apply_payload(task.pk, task_answer(status="processing", progress=40),
                      source=EventSource.POLL)
    assert published == ([task.pk] if watched else [])
