"""The changelists run a fixed number of queries per page, whatever the page size."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_evolink.models import Status
from tests.support.admin import CHANGELIST, EVENTS, IMAGES, add_event, make_task

pytestmark = pytest.mark.django_db


def _make_rows(count: int, users: list) -> None:
    for i in range(count):
        status = (Status.COMPLETED, Status.PROCESSING, Status.FAILED)[i % 3]
        task = make_task(users[i % len(users)], status=status,
                         images=1 if status == Status.COMPLETED else 0, stored=i % 2 == 0,
                         input_files=[f"evolink/inputs/{i}.png"] if i % 4 == 0 else [])
        add_event(task, {"id": task.evolink_id, "status": status}, status_before="pending",
                  status_after=status)


def _queries(client, url: str, params: dict) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(ctx.captured_queries), len(response.context["cl"].result_list)


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (CHANGELIST, {}),
        (CHANGELIST, {"status__exact": "completed"}),
        (CHANGELIST, {"q": "fox"}),
        (CHANGELIST, {"user__isnull": "False", "o": "-9"}),
        (EVENTS, {}),
        (EVENTS, {"source__exact": "poll"}),
        (IMAGES, {}),
        (IMAGES, {"stored": "yes"}),
    ],
)
def test_same_number_of_queries_for_10_and_100_rows(su_client, django_user_model, url, params,
                                                    monkeypatch):
    from django.contrib import admin

    for model_admin in admin.site._registry.values():
        monkeypatch.setattr(model_admin, "list_per_page", 100)
    users = [django_user_model.objects.create_user(f"u{i}", f"u{i}@example.com")
             for i in range(5)]
    _make_rows(10, users)
    su_client.get(url)  # the credit balance is now cached, as on a busy site
    small, shown_small = _queries(su_client, url, params)
    _make_rows(90, users)
    big, shown_big = _queries(su_client, url, params)
    assert 0 < shown_small < shown_big
    if url != IMAGES and (not params or "q" in params):
        assert (shown_small, shown_big) == (10, 100)
    assert small == big, (
        f"{url} {params}: {small} queries for {shown_small} rows, {big} for {shown_big}"
    )


def test_query_budget_of_the_task_changelist(su_client, django_user_model):
    """A guard against a per-row query sneaking in: the page's queries are few and fixed."""
    users = [django_user_model.objects.create_user(f"u{i}", f"u{i}@example.com")
             for i in range(3)]
    _make_rows(30, users)
    su_client.get(CHANGELIST)
    with CaptureQueriesContext(connection) as ctx:
        su_client.get(CHANGELIST, {"list_per_page": 100})
    # session, user, bounded count, rows, first images, date hierarchy (2),
    # user filter choices, credits of the filtered tasks
    assert len(ctx.captured_queries) <= 10, [q["sql"][:120] for q in ctx.captured_queries]


def test_page_size_really_changes(su_client, django_user_model, monkeypatch):
    from django_evolink.admin import ImageTaskAdmin

    users = [django_user_model.objects.create_user("u", "u@example.com")]
    _make_rows(30, users)
    su_client.get(CHANGELIST)
    monkeypatch.setattr(ImageTaskAdmin, "list_per_page", 10)
    q10, n10 = _queries(su_client, CHANGELIST, {})
    monkeypatch.setattr(ImageTaskAdmin, "list_per_page", 100)
    q100, n100 = _queries(su_client, CHANGELIST, {})
    assert (n10, n100) == (10, 30)
    assert q10 == q100


def _dates(years_months):
    import datetime as dt

    from django.utils import timezone

    return [timezone.make_aware(dt.datetime(y, m, 15, 12)) for y, m in years_months]


@pytest.mark.parametrize(("spread", "query", "expected"), [
    ([(2024, 3), (2026, 1)], "", ["2024", "2025", "2026"]),
    ([(2026, 2), (2026, 5)], "", ["February 2026", "March 2026", "April 2026", "May 2026"]),
    ([(2025, 11), (2026, 2), (2026, 4)], "?created_at__year=2026",
     ["February 2026", "March 2026", "April 2026"]),
])
def test_date_hierarchy_needs_no_distinct_scan(su_client, spread, query, expected):
    """The cheap date hierarchy lists years/months from MIN/MAX, not a DISTINCT scan."""
    dates = _dates(spread)
    for created in dates:
        make_task(created=created)
    with CaptureQueriesContext(connection) as ctx:
        page = su_client.get(CHANGELIST + query)
    assert page.status_code == 200
    html = page.content.decode()
    nav = html[html.index('class="toplinks"'):]
    nav = nav[:nav.index("</nav>")]
    for title in expected:
        assert title in nav
    assert not any("DISTINCT" in q["sql"].upper() and "created_at" in q["sql"]
                   for q in ctx.captured_queries), "the date hierarchy scanned the table"
