"""core/rows.py: one task row read with SQL compiled once, made as the ORM makes it."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_evolink.core import rows, tokens
from django_evolink.models import ImageTask
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
