"""The admin's task search uses PostgreSQL's trigram index (migration 0004)."""

from __future__ import annotations

import pytest
from django.db import connection

from django_evolink.admin.filters import task_search
from django_evolink.models import ImageTask
from tests.support.admin import make_task

pytestmark = pytest.mark.django_db


def test_the_search_matches_words_phrases_ids_and_users(user, other_user):
    fox = make_task(user, prompt="A Red Fox in the snow")
    owl = make_task(other_user, prompt="an owl at night, no fox", evolink_id="task-unified-o1")
    ids = lambda term: set(task_search(ImageTask.objects.all(), term).values_list("pk", flat=True))  # noqa: E731
    assert ids("fox") == {fox.pk, owl.pk}
    assert ids("FOX snow") == {fox.pk}  # every word must match
    assert ids('"red fox"') == {fox.pk}  # a quoted phrase is one term
    assert ids("task-unified-o1") == {owl.pk}  # exact Evolink id
    assert ids("task-unified") == set()  # ...not a substring of it
    assert ids("bob fox") == {owl.pk}  # user name and prompt
    assert ids("") == {fox.pk, owl.pk}
    assert ids("100%_") == set()  # LIKE wildcards are literal


@pytest.mark.postgres
def test_postgres_has_the_trigram_index_and_the_search_uses_it(user):
    if connection.vendor != "postgresql":
        pytest.skip("pg_trgm is PostgreSQL-only; on SQLite migration 0004 adds no index")
    make_task(user, prompt="a red fox")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s",
                       ["evolink_task_prompt_trgm"])
        (definition,) = cursor.fetchone()
        assert "gin" in definition and "gin_trgm_ops" in definition
        cursor.execute("SET LOCAL enable_seqscan = off")
        found = task_search(ImageTask.objects.order_by(), "fox")
        sql, params = found.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "evolink_task_prompt_trgm" in plan, plan
