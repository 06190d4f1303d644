"""The usage view: numbers per day and per user, CSV export, periods."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from django_evolink.models import Status
from tests.support.admin import USAGE, make_task

pytestmark = pytest.mark.django_db


def test_usage_view_numbers_and_csv(su_client, user, other_user, settings):
    day1 = timezone.make_aware(dt.datetime(2025, 3, 1, 10, 0))
    day3 = timezone.make_aware(dt.datetime(2025, 3, 3, 23, 30))
    make_task(user, credits="1.2", status=Status.COMPLETED, created=day1)
    make_task(user, credits="1.2", status=Status.FAILED, created=day1)
    make_task(other_user, credits="3", status=Status.COMPLETED, created=day3)
    make_task(None, credits=None, status=Status.QUEUED, evolink_id=None, created=day3)
    make_task(user, credits="50", created=day3 + dt.timedelta(days=1))  # outside
    response = su_client.get(USAGE, {"start": "2025-03-01", "end": "2025-03-03"})
    assert response.status_code == 200
    ctx = response.context
    assert ctx["totals"]["tasks"] == 4
    assert ctx["totals"]["completed"] == 2 and ctx["totals"]["failed"] == 1
    assert ctx["totals"]["credits"] == Decimal("5.4")
    days = {d["day"].isoformat(): (d["tasks"], d["credits_text"]) for d in ctx["days"]}
    assert days == {"2025-03-01": (2, "2.4"), "2025-03-02": (0, "0"), "2025-03-03": (2, "3")}
    users = [(u["username"], u["tasks"], u["credits_text"]) for u in ctx["users"]]
    assert users == [("bob", 1, "3"), ("alice", 2, "2.4"), ("", 1, "0")]
    page = response.content.decode()
    assert "<svg" in page and "<rect" in page and "2025-03-03: 2 tasks, 3 credits" in page

    csv_day = su_client.get(USAGE, {"start": "2025-03-01", "end": "2025-03-03",
                                    "export": "day"})
    assert csv_day["Content-Type"].startswith("text/csv")
    assert "attachment" in csv_day["Content-Disposition"]
    assert csv_day.content.decode().splitlines() == [
        "day,tasks,completed,failed,credits_reserved",
        "2025-03-01,2,1,1,2.4",
        "2025-03-02,0,0,0,0",
        "2025-03-03,2,1,0,3",
    ]
    csv_user = su_client.get(USAGE, {"start": "2025-03-01", "end": "2025-03-03",
                                     "export": "user"}).content.decode().splitlines()
    assert csv_user == [
        "user_id,username,email,tasks,completed,failed,credits_reserved",
        f"{other_user.pk},bob,bob@example.com,1,1,0,3",
        f"{user.pk},alice,alice@example.com,2,1,1,2.4",
        ",,,1,0,0,0",
    ]


def test_usage_days_follow_the_site_time_zone(su_client, user, settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    # 2025-03-01 20:00 UTC is 2025-03-02 05:00 in Tokyo
    make_task(user, created=dt.datetime(2025, 3, 1, 20, 0, tzinfo=dt.timezone.utc))
    response = su_client.get(USAGE, {"start": "2025-03-01", "end": "2025-03-02"})
    days = {d["day"].isoformat(): d["tasks"] for d in response.context["days"]}
    assert days == {"2025-03-01": 0, "2025-03-02": 1}


def test_usage_view_refuses_bad_periods(su_client):
    response = su_client.get(USAGE, {"start": "2025-03-05", "end": "2025-03-01"})
    assert response.status_code == 200
    assert "start date must be on or before" in response.content.decode()
    response = su_client.get(USAGE, {"start": "2020-01-01", "end": "2025-01-01"})
    assert "at most 366 days" in response.content.decode()
    response = su_client.get(USAGE, {"start": "not-a-date"})
    assert "Enter a valid date" in response.content.decode()
    response = su_client.get(USAGE, {"export": "pdf"})
    assert "Unknown export" in response.content.decode()


def test_usage_csv_neutralises_formulas(su_client, django_user_model):
    evil = django_user_model.objects.create_user("=cmd|x", "e@example.com", "pw")
    make_task(evil)
    body = su_client.get(USAGE, {"export": "user"}).content.decode()
    assert "'=cmd|x" in body


def test_usage_default_period_is_the_last_30_days(su_client, user):
    make_task(user)
    make_task(user, created=timezone.now() - dt.timedelta(days=45))
    response = su_client.get(USAGE)
    assert len(response.context["days"]) == 30
    assert response.context["totals"]["tasks"] == 1
