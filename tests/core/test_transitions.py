"""The one transition function under every order of events."""

import itertools
import json
import threading
from decimal import Decimal

import pytest
from django.db import connection

from django_evolink import signals
from django_evolink.core.transitions import apply_payload, fail_task, parse_payload
from django_evolink.models import (
    EventOutcome,
    EventSource,
    GeneratedImage,
    ImageTask,
    Status,
    TaskEvent,
)

pytestmark = pytest.mark.django_db

EVO_ID = "task-unified-1757156493-imcg5zqt"


def payload(status="pending", progress=0, results=None, evo_id=EVO_ID, **extra):
    body = {
        "created": 1757156493,
        "id": evo_id,
        "model": "wan2.5-image-to-image",
        "object": "image.generation.task",
        "progress": progress,
        "status": status,
        "task_info": {"can_cancel": True, "estimated_time": 30},
        "type": "image",
        "usage": {"billing_rule": "per_call", "credits_reserved": 1.2, "user_group": "default"},
    }
    if results is not None:
        body["results"] = results
    body.update(extra)
    return body


RESULTS = ["https://files.evolink.ai/r/0.png", "https://files.evolink.ai/r/1.png"]


@pytest.fixture
def task(db):
    return ImageTask.objects.create(
        model="wan2.5-image-to-image", prompt="p", image_urls=["https://e.com/a.png"], n=2
    )


@pytest.fixture
def accepted(task):
    apply_payload(task, payload(), source=EventSource.SUBMIT)
    return task


class Recorder:
    def __init__(self):
        self.calls = []
        for name in ("task_status_changed", "task_completed", "task_failed"):
            getattr(signals, name).connect(self._make(name), weak=False, dispatch_uid=f"rec-{name}")

    def _make(self, name):
        def receiver(sender, task, **kwargs):
            self.calls.append((name, task.pk, kwargs.get("old_status"), kwargs.get("new_status")))

        return receiver

    def names(self):
        return [c[0] for c in self.calls]

    def close(self):
        for name in ("task_status_changed", "task_completed", "task_failed"):
            getattr(signals, name).disconnect(dispatch_uid=f"rec-{name}")


@pytest.fixture
def rec():
    r = Recorder()
    yield r
    r.close()


def test_submit_answer_sets_id_usage_and_first_poll(task):
    result = apply_payload(task, payload(), source=EventSource.SUBMIT)
    task.refresh_from_db()
    assert result.outcome == EventOutcome.APPLIED
    assert task.evolink_id == EVO_ID
    assert task.status == Status.PENDING
    assert task.credits_reserved == Decimal("1.2")
    assert task.billing_rule == "per_call" and task.user_group == "default"
    assert task.estimated_time == 30 and task.can_cancel is True
    assert task.submitted_at is not None
    assert task.next_poll_at is not None and task.next_poll_at > task.submitted_at
    assert task.events.count() == 1


def test_event_is_recorded_before_apply_and_kept_on_failure(accepted, monkeypatch):
    from django_evolink.core import transitions

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(transitions, "_merge", boom)
    with pytest.raises(RuntimeError):
        apply_payload(accepted, payload("processing", 50), source=EventSource.CALLBACK)
    event = accepted.events.order_by("-id").first()
    assert event.source == EventSource.CALLBACK
    assert event.outcome == EventOutcome.ERROR
    assert "disk on fire" in event.note
    assert event.payload["status"] == "processing"
    accepted.refresh_from_db()
    assert accepted.status == Status.PENDING


@pytest.mark.parametrize("source", [EventSource.POLL, EventSource.CALLBACK, EventSource.SUBMIT])
def test_a_failure_after_the_event_was_stored_still_leaves_the_event(accepted, rec, source,
                                                                     django_capture_on_commit_callbacks):
    """The ``then=`` hook runs after the event row was inserted and the task saved, in the
    same transaction. When it fails, the rollback takes the event's insert with it: the
    delivery must be recorded again (as ``error``), not updated in place (0 rows) and lost."""
    def hook(result):
        assert result.event.pk is not None  # stored, then rolled back below
        raise RuntimeError("the lease fence failed")

    events_before = accepted.events.count()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        apply_payload(accepted, payload("completed", 100, RESULTS), source=source, then=hook)
    assert accepted.events.count() == events_before + 1
    event = accepted.events.order_by("-id").first()
    assert event.source == source and event.outcome == EventOutcome.ERROR
    assert "the lease fence failed" in event.note and event.payload["status"] == "completed"
    accepted.refresh_from_db()
    assert accepted.status == Status.PENDING and not accepted.images.exists()
    assert rec.names() == []  # nothing announced for a rolled-back apply


def test_forward_progress_and_completion(accepted, rec, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        apply_payload(accepted, payload("processing", 40), source=EventSource.POLL)
        apply_payload(accepted, payload("processing", 80), source=EventSource.POLL)
        r = apply_payload(accepted, payload("completed", 100, RESULTS), source=EventSource.POLL)
    assert r.outcome == EventOutcome.APPLIED and r.old_status == "processing"
    accepted.refresh_from_db()
    assert accepted.status == Status.COMPLETED and accepted.progress == 100
    assert accepted.completed_at is not None and accepted.next_poll_at is None
    assert list(accepted.images.values_list("index", "source_url")) == list(enumerate(RESULTS))
    assert rec.names() == ["task_status_changed", "task_status_changed", "task_completed"]


def test_progress_never_decreases(accepted):
    apply_payload(accepted, payload("processing", 70), source=EventSource.POLL)
    r = apply_payload(accepted, payload("processing", 30), source=EventSource.POLL)
    accepted.refresh_from_db()
    assert accepted.progress == 70
    assert r.outcome == EventOutcome.UNCHANGED and not r.changed


def test_status_never_moves_back(accepted):
    apply_payload(accepted, payload("processing", 70), source=EventSource.POLL)
    r = apply_payload(accepted, payload("pending", 90), source=EventSource.CALLBACK)
    accepted.refresh_from_db()
    assert accepted.status == Status.PROCESSING and accepted.progress == 70
    assert r.outcome == EventOutcome.STALE


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize("later", ["pending", "processing", "completed", "failed", "cancelled"])
def test_final_status_never_changes(
    accepted, final, later, rec, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        apply_payload(
            accepted,
            payload(
                final,
                100 if final == "completed" else 10,
                RESULTS if final == "completed" else None,
            ),
            source=EventSource.CALLBACK,
        )
    before = ImageTask.objects.get(pk=accepted.pk)
    rec.calls.clear()
    with django_capture_on_commit_callbacks(execute=True):
        r = apply_payload(
            accepted, payload(later, 100, ["https://x.test/other.png"]), source=EventSource.CALLBACK
        )
    after = ImageTask.objects.get(pk=accepted.pk)
    assert after.status == before.status == final
    assert after.progress == before.progress
    assert after.completed_at == before.completed_at
    assert r.outcome == (EventOutcome.UNCHANGED if later == final else EventOutcome.STALE)
    assert rec.calls == []
    assert after.images.count() == (2 if final == "completed" else 0)


def test_duplicate_completion_four_times_one_signal(
    accepted, rec, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = [
            apply_payload(
                accepted, payload("completed", 100, RESULTS), source=EventSource.CALLBACK
            ).outcome
            for _ in range(4)
        ]
    assert outcomes == ["applied", "unchanged", "unchanged", "unchanged"]
    assert rec.names().count("task_completed") == 1
    assert GeneratedImage.objects.filter(task=accepted).count() == 2
    assert accepted.events.filter(source="callback").count() == 4


def test_wrong_task_is_recorded_not_applied(accepted):
    r = apply_payload(
        accepted,
        payload("completed", 100, RESULTS, evo_id="task-unified-other"),
        source=EventSource.CALLBACK,
    )
    accepted.refresh_from_db()
    assert r.outcome == EventOutcome.WRONG_TASK
    assert accepted.status == Status.PENDING and accepted.images.count() == 0


def test_poll_cannot_set_an_id_on_an_unaccepted_task(task):
    r = apply_payload(task, payload("completed", 100, RESULTS), source=EventSource.CALLBACK)
    task.refresh_from_db()
    assert r.outcome == EventOutcome.WRONG_TASK and task.evolink_id is None


def test_unknown_status_recorded_not_applied(accepted):
    r = apply_payload(accepted, payload("exploded", 99), source=EventSource.POLL)
    accepted.refresh_from_db()
    assert r.outcome == EventOutcome.UNKNOWN_STATUS
    assert accepted.status == Status.PENDING and accepted.progress == 0
    assert accepted.events.filter(outcome="unknown_status").count() == 1


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        "completed",
        {"status": "completed"},
        {"id": EVO_ID},
        {"id": EVO_ID, "status": "processing", "progress": 101},
        {"id": EVO_ID, "status": "processing", "progress": -1},
        {"id": EVO_ID, "status": "processing", "progress": "50"},
        {"id": EVO_ID, "status": "processing", "progress": True},
        {"id": EVO_ID, "status": "completed", "results": "https://x/1.png"},
        {"id": EVO_ID, "status": "completed", "results": ["file:///etc/passwd"]},
        {"id": EVO_ID, "status": "pending", "usage": {"credits_reserved": "lots"}},
        {"id": EVO_ID, "status": "pending", "usage": {"credits_reserved": -1}},
        {"id": EVO_ID, "status": "pending", "task_info": {"can_cancel": "yes"}},
        {"id": 12, "status": "pending"},
    ],
)
def test_malformed_payloads_are_recorded_and_change_nothing(accepted, bad):
    r = apply_payload(accepted, bad, source=EventSource.CALLBACK)
    accepted.refresh_from_db()
    assert r.outcome == EventOutcome.MALFORMED
    assert accepted.status == Status.PENDING
    assert accepted.events.filter(outcome="malformed").count() == 1


def test_failed_payload_records_error(accepted, rec, django_capture_on_commit_callbacks):
    body = payload("failed", 20, error={"type": "content_policy", "message": "refused"})
    with django_capture_on_commit_callbacks(execute=True):
        apply_payload(accepted, body, source=EventSource.POLL)
    accepted.refresh_from_db()
    assert accepted.status == Status.FAILED
    assert accepted.error == {"code": "content_policy", "message": "refused"}
    assert rec.names() == ["task_status_changed", "task_failed"]


def test_cancelled_gets_a_default_error(accepted):
    apply_payload(accepted, payload("cancelled", 20), source=EventSource.CALLBACK)
    accepted.refresh_from_db()
    assert accepted.status == Status.CANCELLED and accepted.error_code == "task_cancelled"


def test_fail_task_goes_through_the_same_path(accepted, rec, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        fail_task(accepted, code="timeout", message="No final status within 3600 s.")
        fail_task(accepted, code="timeout", message="again")
    accepted.refresh_from_db()
    assert accepted.status == Status.FAILED and accepted.error_code == "timeout"
    assert rec.names() == ["task_status_changed", "task_failed"]
    assert accepted.events.filter(source="system").count() == 2


def test_callback_stamps_callback_received_at(accepted):
    apply_payload(accepted, payload("completed", 100, RESULTS), source=EventSource.CALLBACK)
    accepted.refresh_from_db()
    assert accepted.callback_received_at is not None


def test_completed_skipping_processing_is_fine(accepted):
    apply_payload(accepted, payload("completed", 100, RESULTS), source=EventSource.POLL)
    accepted.refresh_from_db()
    assert accepted.status == Status.COMPLETED and accepted.images.count() == 2


def test_parse_payload_keeps_credits_exact():
    update = parse_payload(payload())
    assert update.credits_reserved == Decimal("1.2000")


SEQUENCE = [
    payload("pending", 0),
    payload("processing", 30),
    payload("processing", 60),
    payload("completed", 100, RESULTS),
    payload("processing", 90),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(SEQUENCE)))))
def test_every_order_ends_in_the_furthest_state(
    accepted, order, rec, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for i in order:
            apply_payload(accepted, SEQUENCE[i], source=EventSource.CALLBACK)
    accepted.refresh_from_db()
    assert accepted.status == Status.COMPLETED and accepted.progress == 100
    assert accepted.images.count() == 2
    assert rec.names().count("task_completed") == 1
    statuses = [c[3] for c in rec.calls if c[0] == "task_status_changed"]
    assert len(statuses) == len(set(statuses))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_threads_same_completion_postgres(rec):
    if connection.vendor != "postgresql":
        pytest.skip("row locks between threads need PostgreSQL (set DATABASE_URL)")
    from django.db import close_old_connections

    for _round in range(10):
        task = ImageTask.objects.create(
            model="wan2.5-image-to-image", prompt="p", image_urls=["https://e.com/a.png"], n=2
        )
        apply_payload(task, payload(evo_id=f"task-unified-{task.pk}"), source=EventSource.SUBMIT)
        rec.calls.clear()
        barrier = threading.Barrier(2)
        errors = []

        def worker(task_id=task.pk, barrier=barrier, errors=errors):
            try:
                barrier.wait()
                apply_payload(
                    task_id,
                    payload("completed", 100, RESULTS, evo_id=f"task-unified-{task_id}"),
                    source=EventSource.CALLBACK,
                )
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                close_old_connections()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert rec.names().count("task_completed") == 1
        assert GeneratedImage.objects.filter(task=task).count() == 2
        assert TaskEvent.objects.filter(task=task, source="callback").count() == 2
        assert TaskEvent.objects.filter(task=task, source="callback", changed=True).count() == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"id": EVO_ID, "status": "\x00"},
        {"id": EVO_ID + "\x00", "status": "pending"},
        {"id": EVO_ID, "status": "pending", "progress": float("nan")},
        {"id": EVO_ID, "status": "pending", "usage": {"credits_reserved": float("inf")}},
        {"id": EVO_ID, "status": "pending", "note": "\ud800"},
    ],
)
def test_payloads_a_database_cannot_store_are_still_recorded(accepted, bad):
    """PostgreSQL's jsonb refuses NUL, lone surrogates and NaN: record them sanitised."""
    r = apply_payload(accepted, bad, source=EventSource.POLL)
    accepted.refresh_from_db()
    assert accepted.status == Status.PENDING
    assert r.outcome in (EventOutcome.MALFORMED, EventOutcome.UNKNOWN_STATUS,
                         EventOutcome.WRONG_TASK, EventOutcome.UNCHANGED)
    stored = TaskEvent.objects.get(pk=r.event.pk).payload
    assert "\x00" not in json.dumps(stored)


# ------------------------------------------------------------------ optimistic apply

SEQUENCES = {
    "progress then completion": [("processing", 30, None), ("processing", 70, None),
                                 ("completed", 100, RESULTS)],
    "duplicates and stale": [("processing", 70, None), ("processing", 30, None),
                             ("completed", 100, RESULTS), ("completed", 100, RESULTS),
                             ("processing", 90, None)],
    "failure": [("processing", 10, None), ("failed", 10, None), ("completed", 100, RESULTS)],
}
#: Columns that only differ by when they were written (or which row they belong to).
TIMES = {"id", "created_at", "updated_at", "completed_at", "callback_received_at",
         "next_poll_at", "submitted_at", "received_at", "next_download_at",
         "source_expires_at", "task_id"}


def _row(obj) -> dict:
    row = {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields
           if f.attname not in TIMES and f.attname != "evolink_id"}  # unique per task
    if isinstance(row.get("payload"), dict):
        row["payload"] = {k: v for k, v in row["payload"].items() if k != "id"}
    if "source_url" in row:
        row["source_url"] = row["source_url"].rsplit("/", 1)[-1]
    return row


@pytest.mark.parametrize("sequence", sorted(SEQUENCES))
def test_an_optimistic_apply_ends_exactly_as_the_locked_apply(sequence, monkeypatch):
    """Each callback applied to the row just read (optimistic) leaves the same task, events,
    images and signals as the locked path - without ever locking it."""
    from django_evolink.core import rows

    locks = []
    locked_task = rows.locked_task
    monkeypatch.setattr(rows, "locked_task", lambda pk: locks.append(pk) or locked_task(pk))
    ends = []
    for optimistic in (False, True):
        recorder = Recorder()
        try:
            created = ImageTask.objects.create(
                model="wan2.5-image-to-image", prompt="p", image_urls=["https://e.com/a.png"],
                n=2)
            evo_id = f"task-unified-optimistic-{optimistic}"  # unique per task
            apply_payload(created, payload(evo_id=evo_id), source=EventSource.SUBMIT)
            outcomes = []
            for status, progress, results in SEQUENCES[sequence]:
                body = payload(status, progress, results, evo_id=evo_id)
                read = ImageTask.objects.get(pk=created.pk)  # what the token lookup reads
                result = apply_payload(read, body, source=EventSource.CALLBACK,
                                       update=parse_payload(body), optimistic=optimistic)
                assert _row(read) == _row(ImageTask.objects.get(pk=created.pk))
                outcomes.append((result.outcome, result.changed, result.old_status,
                                 result.new_status))
        finally:
            recorder.close()
        stored = ImageTask.objects.get(pk=created.pk)
        assert stored.callback_received_at is not None and stored.updated_at is not None
        ends.append((
            _row(stored), outcomes,
            [_row(e) for e in stored.events.order_by("received_at", "id")],
            [_row(i) for i in stored.images.order_by("index")],
            [c[0] for c in recorder.calls],
        ))
        taken, locks[:] = len(locks), []
        assert taken == (1 if optimistic else 1 + len(SEQUENCES[sequence]))  # 1: the submit
    assert ends[0] == ends[1]


def test_an_optimistic_apply_to_a_row_changed_meanwhile_decides_again_under_lock(accepted):
    """The row read by the callback is stale by the time it is written: the guard fails, so
    the answer is merged again with the row locked - no lost update."""
    read = ImageTask.objects.get(pk=accepted.pk)
    apply_payload(accepted.pk, payload("processing", 80), source=EventSource.POLL)
    body = payload("processing", 60)
    result = apply_payload(read, body, source=EventSource.CALLBACK,
                           update=parse_payload(body), optimistic=True)
    stored = ImageTask.objects.get(pk=accepted.pk)
    assert stored.progress == 80 and read.progress == 80  # not written back to 60
    assert result.outcome == EventOutcome.UNCHANGED and stored.callback_received_at
    assert stored.events.filter(source=EventSource.CALLBACK).get().outcome == "unchanged"


def test_an_optimistic_apply_needs_the_task_read_and_nothing_to_run_in_its_transaction(
        accepted):
    with pytest.raises(TypeError, match="optimistic"):
        apply_payload(accepted.pk, payload("processing", 60), source=EventSource.CALLBACK,
                      optimistic=True)
    with pytest.raises(TypeError, match="optimistic"):
        apply_payload(accepted, payload("processing", 60), source=EventSource.CALLBACK,
                      optimistic=True, then=lambda result: None)
