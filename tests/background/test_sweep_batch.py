"""The sweep applies a batch of poll answers in one transaction (transitions.apply_answers):
fewer statements, the same rules as one answer at a time."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_evolink import signals
from django_evolink.background import sweep
from django_evolink.core import transitions
from django_evolink.core.transitions import Answer, BatchError, apply_answers, parse_payload
from django_evolink.models import (
    EventOutcome,
    EventSource,
    GeneratedImage,
    ImageTask,
    Status,
    TaskEvent,
)
from tests.support.background import (
    SharedClock,
    db_task,
    emulated_db_task,
    emulated_db_tasks,
    poll_settings,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def emu_settings(settings, evolink_emulator):
    return poll_settings(settings, POLL_CONCURRENCY=4, POLL_BATCH_SIZE=50)


def _sweep_statements(n: int, emu, clock) -> tuple[int, list[ImageTask]]:
    tasks = emulated_db_tasks(emu, n, duration=10_000, status=Status.PROCESSING)
    clock.advance(200)
    with CaptureQueriesContext(connection) as queries:
        counts = sweep.run_sweep()
    assert counts["polled"] == n and counts["changed"] == n and counts["errors"] == 0
    ImageTask.objects.filter(pk__in=[t.pk for t in tasks]).update(status=Status.COMPLETED)
    return len(queries), tasks


def _claimed_answers(emu, clock, count: int) -> tuple[str, list[ImageTask], list[tuple]]:
    """``count`` processing tasks, due and claimed as one batch, and Evolink's answers."""
    emulated_db_tasks(emu, count, duration=10_000, status=Status.PROCESSING)
    clock.advance(200)
    token, claimed = sweep.claim_batch(timezone.now(), 10)
    return token, claimed, [(t, "ok", emu.tasks[t.evolink_id].to_json()) for t in claimed]


def _handle(answers: list[tuple], token: str) -> dict[str, int]:
    """Apply the claimed batch's ``answers`` as the sweep does; returns its counts."""
    counts = dict.fromkeys(sweep.COUNT_KEYS, 0)
    sweep._handle_all(iter(answers), token, counts)
    return counts


@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_batch_costs_the_same_statements_for_3_and_12_tasks(evolink_emulator, emu_settings,
                                                             monkeypatch):
    clock = SharedClock(monkeypatch, evolink_emulator)
    small, _ = _sweep_statements(3, evolink_emulator, clock)
    large, tasks = _sweep_statements(12, evolink_emulator, clock)
    assert small == large
    # every answer recorded, applied and scheduled; the lease released
    for task in ImageTask.objects.filter(pk__in=[t.pk for t in tasks]):
        assert task.poll_count == 1 and task.lease_token is None and task.lease_until is None
        assert task.progress > 0 and task.next_poll_at is not None
        assert task.last_polled_at is not None
        event = TaskEvent.objects.get(task=task)
        assert (event.source, event.outcome, event.changed) == (
            EventSource.POLL, EventOutcome.APPLIED, True)
        assert event.status_before == event.status_after == Status.PROCESSING
        assert event.payload["id"] == task.evolink_id


@pytest.mark.evolink_emulator(manual_clock=True)
def test_completions_in_a_batch_record_images_and_signal_once(
    evolink_emulator, emu_settings, monkeypatch, django_capture_on_commit_callbacks
):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", lambda pk: None)
    tasks = emulated_db_tasks(emu, 4, duration=1, n=2)
    running = emulated_db_task(emu, duration=10_000)
    completed, changed = [], []

    def on_completed(sender, task, **kwargs):
        completed.append(task.pk)

    def on_changed(sender, task, old_status, new_status, **kwargs):
        changed.append((task.pk, old_status, new_status))

    signals.task_completed.connect(on_completed)
    signals.task_status_changed.connect(on_changed)
    try:
        clock.advance(60)
        with django_capture_on_commit_callbacks(execute=True):
            counts = sweep.run_sweep()
        # applied again: duplicates change nothing and signal nothing
        ImageTask.objects.filter(pk=running.pk).update(next_poll_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            sweep.run_sweep(all_tasks=True)
    finally:
        signals.task_completed.disconnect(on_completed)
        signals.task_status_changed.disconnect(on_changed)
    assert counts["completed"] == 4 and counts["polled"] == 5 and counts["changed"] == 5
    assert sorted(completed) == sorted(t.pk for t in tasks)
    assert sorted(changed) == sorted(
        [(t.pk, Status.PENDING, Status.COMPLETED) for t in tasks]
        + [(running.pk, Status.PENDING, Status.PROCESSING)])
    for task in ImageTask.objects.filter(pk__in=[t.pk for t in tasks]):
        assert task.status == Status.COMPLETED and task.progress == 100
        assert task.next_poll_at is None and task.lease_token is None
        assert task.completed_at is not None
        assert GeneratedImage.objects.filter(task=task).count() == 2
        assert TaskEvent.objects.filter(task=task, outcome=EventOutcome.APPLIED).count() == 1


@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_malformed_answer_leaves_the_batch_and_is_recorded_as_such(
    evolink_emulator, emu_settings, monkeypatch
):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    token, claimed, answers = _claimed_answers(emu, clock, 3)
    answers[0] = (claimed[0], "ok", {"id": claimed[0].evolink_id, "status": 12})
    other = {**emu.tasks[claimed[2].evolink_id].to_json(), "id": "task-unified-other"}
    answers[2] = (claimed[2], "ok", other)
    counts = _handle(answers, token)
    assert counts["polled"] == 3 and counts["changed"] == 1 and counts["errors"] == 2
    outcomes = {e.task_id: e.outcome for e in TaskEvent.objects.all()}
    assert outcomes == {claimed[0].pk: EventOutcome.MALFORMED,
                        claimed[1].pk: EventOutcome.APPLIED,
                        claimed[2].pk: EventOutcome.WRONG_TASK}
    assert not ImageTask.objects.filter(lease_token__isnull=False).exists()


@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_batch_that_cannot_be_applied_as_one_is_applied_one_by_one(
    evolink_emulator, emu_settings, monkeypatch
):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    token, _claimed, answers = _claimed_answers(emu, clock, 4)
    real = transitions._write_batch

    def fail_after_writing(*args, **kwargs):
        real(*args, **kwargs)  # written, then rolled back as a whole
        raise RuntimeError("the database went away")

    monkeypatch.setattr(transitions, "_write_batch", fail_after_writing)
    counts = _handle(answers, token)
    assert counts["polled"] == 4 and counts["changed"] == 4 and counts["errors"] == 0
    assert TaskEvent.objects.count() == 4  # once each: the batch's inserts were rolled back
    assert TaskEvent.objects.filter(outcome=EventOutcome.APPLIED).count() == 4
    assert set(ImageTask.objects.values_list("poll_count", flat=True)) == {1}
    assert not ImageTask.objects.filter(lease_token__isnull=False).exists()


@pytest.mark.evolink_emulator(manual_clock=True)
def test_a_lost_lease_in_a_batch_writes_the_answer_not_the_schedule(
    evolink_emulator, emu_settings, monkeypatch
):
    emu = evolink_emulator
    clock = SharedClock(monkeypatch, emu)
    token, claimed, answers = _claimed_answers(emu, clock, 3)
    other = "00000000-0000-0000-0000-00000000000f"
    ImageTask.objects.filter(pk=claimed[0].pk).update(lease_token=other)
    _handle(answers, token)
    lost = ImageTask.objects.get(pk=claimed[0].pk)
    assert str(lost.lease_token) == other and lost.poll_count == 0 and lost.progress > 0
    for task in ImageTask.objects.exclude(pk=claimed[0].pk):
        assert task.lease_token is None and task.poll_count == 1


def test_apply_answers_refuses_a_task_twice_and_records_nothing():
    task = db_task("task-unified-1", status=Status.PROCESSING)
    body = {"id": "task-unified-1", "object": "image.generation.task", "status": "processing",
            "progress": 40, "created": 1761000000, "model": "wan2.5-image-to-image"}
    update = parse_payload(body)
    with pytest.raises(BatchError):
        apply_answers([Answer(task.pk, body, update), Answer(task.pk, body, update)],
                      source=EventSource.POLL)
    assert not TaskEvent.objects.exists()
    task.refresh_from_db()
    assert task.progress == 0
    assert transitions.apply_answers([], source=EventSource.POLL) == []


def test_apply_answers_follows_the_forward_only_rule():
    done = db_task("task-unified-2", status=Status.COMPLETED, progress=100,
                   next_poll_at=None, completed_at=timezone.now() - dt.timedelta(seconds=5))
    body = {"id": "task-unified-2", "object": "image.generation.task", "status": "processing",
            "progress": 40, "created": 1761000000, "model": "wan2.5-image-to-image"}
    result, = apply_answers([Answer(done.pk, body, parse_payload(body))],
                            source=EventSource.POLL)
    assert result.outcome == EventOutcome.STALE and not result.changed
    done.refresh_from_db()
    assert done.status == Status.COMPLETED and done.progress == 100
    event = TaskEvent.objects.get(task=done)
    assert (event.outcome, event.status_before, event.status_after) == (
        EventOutcome.STALE, Status.COMPLETED, Status.COMPLETED)


def test_a_batch_larger_than_the_query_parameter_limit_is_written_in_chunks(monkeypatch):
    tasks = [db_task(f"task-unified-chunk{i}", status=Status.PROCESSING) for i in range(5)]
    # progress and updated_at: 2 parameters per field and row, plus the key: 5 per row
    # two rows per UPDATE; on the class: Django 6.1's SQLite features make it a read-only
    # property (and drop a value an older version cached on the instance)
    monkeypatch.delitem(vars(connection.features), "max_query_params", raising=False)
    monkeypatch.setattr(type(connection.features), "max_query_params", 11)
    answers = []
    for i, task in enumerate(tasks):
        body = {"id": task.evolink_id, "object": "image.generation.task",
                "status": "processing", "progress": 10 + i, "created": 1761000000,
                "model": "wan2.5-image-to-image"}
        answers.append(Answer(task.pk, body, parse_payload(body)))
    with CaptureQueriesContext(connection) as queries:
        results = apply_answers(answers, source=EventSource.POLL)
    assert [r.outcome for r in results] == [EventOutcome.APPLIED] * 5
    updates = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 3  # 2 + 2 + 1 rows
    assert {t.pk: t.progress for t in ImageTask.objects.all()} == {
        t.pk: 10 + i for i, t in enumerate(tasks)}
