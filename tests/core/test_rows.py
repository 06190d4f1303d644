"""core/rows.py: one task row read with SQL compiled once, made as the ORM makes it, and
written by a compare-and-set with the rows it records."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_evolink.core import rows, tokens
from django_evolink.models import EventSource, GeneratedImage, ImageTask, TaskEvent
from tests.support.api import make_task

pytestmark = pytest.mark.django_db


def _rich_task():
    return make_task(
        params={"size": "16:9", "nested": {"a": [1, 2.5, None]}},
        credits_reserved=Decimal("1.25"), credits_estimated=Decimal("2.50"),
        submitted_at=timezone.now(), input_files=[{"name": "in.png", "bytes": 12}],
    )


def _same_as_the_orm(found: ImageTask, pk) -> None:
    expected = ImageTask.objects.get(pk=pk)
    for field in ImageTask._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
        assert type(getattr(found, field.attname)) is type(getattr(expected, field.attname))
    assert not found._state.adding and found._state.db == expected._state.db


@pytest.mark.parametrize("for_update", [False, True])
def test_a_task_found_by_its_token_hash_is_the_orms_task(for_update):
    """The converters are applied by hand: every field (UUID, JSON, decimals, dates) must
    come out as the ORM's own read, the first time (compiled) and the next (cached)."""
    task, raw = _rich_task()
    digest = tokens.hash_token(raw)
    with transaction.atomic():
        for _first_then_cached in range(2):
            found = rows.task_by("callback_token_hash", digest, for_update=for_update)
            _same_as_the_orm(found, task.pk)
    assert rows.task_by("callback_token_hash", tokens.hash_token("unknown")) is None


def test_a_locked_task_by_primary_key_is_the_orms_task_and_a_missing_one_raises():
    task, _raw = _rich_task()
    with transaction.atomic():
        _same_as_the_orm(rows.locked_task(task.pk), task.pk)
        _same_as_the_orm(rows.locked_task(str(task.pk)), task.pk)  # as jobs pass it
        with pytest.raises(ImageTask.DoesNotExist):
            rows.locked_task("00000000-0000-4000-8000-000000000000")


def test_the_lookup_is_one_statement_and_locks_where_the_database_can():
    task, _raw = _rich_task()
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        rows.locked_task(task.pk)
    [select] = [q["sql"] for q in queries.captured_queries]
    assert select.startswith("SELECT")
    assert select.endswith("FOR UPDATE") == connection.features.has_select_for_update


def test_a_field_that_is_not_a_column_is_refused():
    with pytest.raises(TypeError, match="not a column"):
        rows.task_by("images", 1)


def _delivery() -> TaskEvent:
    """A callback delivery as the receiver makes it: not saved, its task not known."""
    return TaskEvent(source=EventSource.CALLBACK, payload={"id": "x", "progress": 60},
                     headers={"User-Agent": "x"}, remote_addr="127.0.0.1",
                     note="callback delivery")


def test_find_and_record_finds_the_orms_task_and_stores_the_delivery_for_it():
    task, raw = _rich_task()
    digest = tokens.hash_token(raw)
    for _first_then_cached in range(2):
        event = _delivery()
        with CaptureQueriesContext(connection) as queries:
            found = rows.find_and_record("callback_token_hash", digest, event)
        _same_as_the_orm(found, task.pk)
        assert event.pk is not None and not event._state.adding and event.task_id == task.pk
        saved = TaskEvent.objects.get(pk=event.pk)
        for field in ("task_id", "source", "payload", "headers", "remote_addr", "note",
                      "outcome", "changed"):
            assert getattr(saved, field) == getattr(event, field), field
        sql = [q["sql"] for q in queries.captured_queries]
        if connection.vendor == "postgresql":  # the INSERT selects from the lookup
            assert len(sql) == 1 and sql[0].startswith("WITH") and "INSERT INTO" in sql[0]
    assert TaskEvent.objects.filter(task=task).count() == 2


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_find_and_record_stores_nothing_for_a_final_task(status):
    task, raw = make_task(status=status, completed_at=timezone.now())
    event = _delivery()
    found = rows.find_and_record("callback_token_hash", tokens.hash_token(raw), event)
    assert found.pk == task.pk and found.status == status
    assert event.pk is None and event._state.adding
    assert not TaskEvent.objects.exists()


def test_find_and_record_stores_nothing_for_an_unknown_token():
    make_task()
    event = _delivery()
    assert rows.find_and_record("callback_token_hash", tokens.hash_token("nope"), event) is None
    assert event.pk is None and not TaskEvent.objects.exists()


def _event(task: ImageTask, **fields) -> TaskEvent:
    return TaskEvent(task_id=task.pk, source=EventSource.CALLBACK, payload={"progress": 60},
                     headers={"User-Agent": "x"}, remote_addr="127.0.0.1", note="n",
                     outcome="applied", changed=True, status_before="processing",
                     status_after="completed", **fields)


def _images(task: ImageTask, count: int) -> list[GeneratedImage]:
    now = timezone.now()
    return [GeneratedImage(task=task, index=i, source_url=f"https://x.test/{i}.png",
                           source_expires_at=now, next_download_at=now)
            for i in range(count)]


@pytest.mark.parametrize("images", [0, 2])
def test_a_guarded_write_whose_guard_holds_writes_the_row_the_event_and_the_images(images):
    task, _raw = _rich_task()
    later = timezone.now() + timezone.timedelta(minutes=5)
    ImageTask.objects.filter(pk=task.pk).update(watched_until=later)  # a viewer's mark
    task.watched_until = None  # what the write returns replaces it
    for _first_then_cached in range(2):
        event = _event(task)
        with CaptureQueriesContext(connection) as queries:
            written = rows.write_guarded(
                task, {"status": "completed", "progress": 100},
                {"status": "processing", "evolink_id": task.evolink_id, "completed_at": None},
                event, _images(task, images))
        assert written is True
        assert task.watched_until == later
        assert event.pk is not None and not event._state.adding
        ImageTask.objects.filter(pk=task.pk).update(status="processing", progress=0)
    stored = ImageTask.objects.get(pk=task.pk)
    assert TaskEvent.objects.filter(task=task).count() == 2
    saved = TaskEvent.objects.get(pk=event.pk)
    for field in ("payload", "headers", "remote_addr", "note", "outcome", "changed",
                  "status_before", "status_after", "source"):
        assert getattr(saved, field) == getattr(event, field), field
    assert saved.received_at is not None
    assert sorted(stored.images.values_list("index", flat=True)) == list(range(images))
    if connection.vendor == "postgresql":  # one statement; a second image set is ignored
        assert len([q for q in queries.captured_queries
                    if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]) == 1


def test_a_guarded_write_whose_row_changed_writes_nothing():
    task, _raw = _rich_task()
    ImageTask.objects.filter(pk=task.pk).update(progress=80)  # written meanwhile
    event = _event(task)
    written = rows.write_guarded(task, {"progress": 60}, {"progress": task.progress}, event,
                                 _images(task, 1))
    assert written is False and event.pk is None
    assert ImageTask.objects.get(pk=task.pk).progress == 80
    assert not TaskEvent.objects.filter(task=task).exists()
    assert not GeneratedImage.objects.filter(task=task).exists()


def test_a_guarded_write_that_fails_writes_nothing_and_leaves_the_event_unsaved():
    task, _raw = _rich_task()
    event = _event(task)
    event.changed = None  # NOT NULL: the event's insert fails
    with pytest.raises(Exception, match="(?i)null"):
        rows.write_guarded(task, {"progress": 60}, {"progress": task.progress}, event)
    assert event.pk is None and event._state.adding
    assert ImageTask.objects.get(pk=task.pk).progress == task.progress
    assert not TaskEvent.objects.filter(task=task).exists()
