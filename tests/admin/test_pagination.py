"""The changelists' paginator never counts a whole large table."""

from __future__ import annotations

import pytest

from django_evolink.admin import EstimatedCountPaginator
from django_evolink.models import ImageTask
from tests.support.admin import CHANGELIST, make_task

pytestmark = pytest.mark.django_db


def test_paginator_caps_the_count(user):
    for _ in range(7):
        make_task(user)
    paginator = EstimatedCountPaginator(ImageTask.objects.all(), 3, count_limit=5)
    assert paginator.count == 6 and not paginator.count_is_exact
    assert paginator.num_pages == 2
    assert len(paginator.page(3).object_list) == 1  # past the capped end, still served
    assert len(paginator.page(9).object_list) == 0
    exact = EstimatedCountPaginator(ImageTask.objects.all(), 3, count_limit=50)
    assert exact.count == 7 and exact.count_is_exact


def test_changelist_says_when_the_count_is_capped(su_client, user, monkeypatch):
    from django_evolink.admin import ImageTaskAdmin

    monkeypatch.setattr(ImageTaskAdmin, "exact_count_limit", 3)
    for _ in range(5):
        make_task(user)
    page = su_client.get(CHANGELIST).content.decode()
    assert "more than 3 image tasks" in page
    monkeypatch.setattr(ImageTaskAdmin, "exact_count_limit", 100)
    page = su_client.get(CHANGELIST).content.decode()
    assert "5 image tasks" in page


@pytest.mark.postgres
def test_postgres_unfiltered_count_is_the_planner_estimate(su_client, user, monkeypatch):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pg_class.reltuples is PostgreSQL-only")
    for _ in range(4):
        make_task(user)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ImageTask._meta.db_table}")
    paginator = EstimatedCountPaginator(ImageTask.objects.all(), 2, count_limit=3)
    assert paginator.count == 4 and paginator.count_is_estimate
    filtered = EstimatedCountPaginator(ImageTask.objects.filter(status="processing"), 2,
                                       count_limit=3)
    assert filtered.count == 4 and not filtered.count_is_estimate
    assert not filtered.count_is_exact
