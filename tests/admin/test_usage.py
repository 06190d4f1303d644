"""The usage view: numbers per day and per user, CSV export, periods."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.utils import timezone

from django_evolink.admin.exports import csv_cell
from django_evolink.models import ModelPrice, Status
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
    assert list(csv.reader(io.StringIO(csv_day.content.decode()))) == [
        ["day", "tasks", "completed", "failed", "credits_reserved"],
        ["2025-03-01", "2", "1", "1", "2.4"],
        ["2025-03-02", "0", "0", "0", "0"],
        ["2025-03-03", "2", "1", "0", "3"],
    ]
    csv_user = su_client.get(USAGE, {"start": "2025-03-01", "end": "2025-03-03",
                                     "export": "user"}).content.decode()
    assert list(csv.reader(io.StringIO(csv_user))) == [
        ["user_id", "username", "email", "tasks", "completed", "failed", "credits_reserved"],
        [str(other_user.pk), "bob", "bob@example.com", "1", "1", "0", "3"],
        [str(user.pk), "alice", "alice@example.com", "2", "1", "1", "2.4"],
        ["", "", "", "1", "0", "0", "0"],
    ]
    assert all(line.startswith('"') for line in csv_user.splitlines())  # every cell quoted


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


FORMULAS = [
    "=cmd|x", "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", "\n=1+1", " =1+1",
    "  @SUM(A1)", "\u00a0=1+1", "a;=1+1", "a,=HYPERLINK(\"http://x\")", "a; -2+3",
    'a"=1+1', "a'=1+1", "x|=cmd", "\uff1d1+1", "bob;\uff20SUM(A1)",
]


@pytest.mark.parametrize("username", FORMULAS)
def test_usage_csv_neutralises_formulas_as_owasp_says(su_client, django_user_model, username):
    """A cell that starts a formula - at its start, after leading whitespace, after a
    separator, quote or pipe inside it, or with a fullwidth sign - is prefixed with a
    single quote; every cell is quoted so a separator cannot open a new cell."""
    user = django_user_model.objects.create_user(username, "e@example.com", "pw")
    make_task(user)
    body = su_client.get(USAGE, {"export": "user"}).content.decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert all(len(row) == 7 for row in rows)  # nothing split into extra cells
    assert [row[1] for row in rows[1:]] == ["'" + user.username]  # as stored (NFKC)


@pytest.mark.parametrize("value", ["\u00a0=1+1", "\uff1d1+1", "bob;\uff20SUM(A1)"])
def test_unnormalised_formulas_are_neutralised_too(value):
    """Usernames are NFKC-normalised on save; other text (e-mail addresses) is not."""
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["alice", "bob@example.com", "2025-03-01", "a-b", "x=y",
                                   "", "O'Brien", "3"])
def test_plain_text_cells_are_left_alone(value):
    assert csv_cell(value) == value


def test_numbers_are_written_as_numbers():
    assert csv_cell(-3) == -3 and csv_cell(Decimal("-2.5")) == Decimal("-2.5")


def test_usage_default_period_is_the_last_30_days(su_client, user):
    make_task(user)
    make_task(user, created=timezone.now() - dt.timedelta(days=45))
    response = su_client.get(USAGE)
    assert len(response.context["days"]) == 30
    assert response.context["totals"]["tasks"] == 1


def test_usage_view_shows_who_is_near_a_spending_limit(su_client, user, other_user, settings):
    settings.EVOLINK = {**settings.EVOLINK, "LIMITS": {
        "ACTIVE_TASKS_PER_USER": 5, "CREDITS_PER_USER_PER_DAY": 10, "CREDITS_PER_DAY": 20}}
    for _ in range(4):  # 4 of 5 unfinished tasks: 80 %, near
        make_task(user, status=Status.PROCESSING, credits="1")
    make_task(other_user, status=Status.PROCESSING, credits="2")  # 20 %: not listed
    make_task(other_user, status=Status.FAILED, credits="9")  # released: counts nothing
    page = su_client.get(USAGE).content.decode()
    assert 'id="evolink-limits"' in page
    assert "The site reserved 6 of its 20 credits." in page
    near = page.split('id="evolink-near-limits"')[1].split("</table>")[0]
    assert f"?user__id__exact={user.pk}" in near and "4 / 5" in near and "80%" in near
    assert f"?user__id__exact={other_user.pk}" not in near


def test_usage_view_has_no_limits_section_without_limits(su_client, user):
    make_task(user)
    assert 'id="evolink-limits"' not in su_client.get(USAGE).content.decode()


def test_the_price_table_is_listed_and_editable(su_client):
    price = ModelPrice.objects.create(model="wan2.5-image-to-image", params={"size": "1:1"},
                                      credits_per_image=Decimal("1.2"))
    listing = su_client.get("/admin/django_evolink/modelprice/")
    assert listing.status_code == 200 and "size=1:1" in listing.content.decode()
    response = su_client.post(f"/admin/django_evolink/modelprice/{price.pk}/change/", {
        "model": "wan2.5-image-to-image", "params": '{"size": "1:1", "seed": 4}',
        "credits_per_image": "2.5"})
    assert response.status_code == 302, response.content.decode()[:2000]
    price.refresh_from_db()
    assert price.credits_per_image == Decimal("2.5") and price.params == {"size": "1:1"}
