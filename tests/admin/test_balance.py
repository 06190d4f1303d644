"""Evolink's balance above the task changelist, and the page when Evolink is down."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
import requests
import responses
from django.core.management import call_command

from django_evolink.models import Status
from tests.support import evolink_samples as samples
from tests.support.admin import API_KEY, BASE, CHANGELIST, make_task

pytestmark = pytest.mark.django_db


def test_changelist_shows_balance_and_filtered_credits(su_client, evolink, user, other_user):
    make_task(user, credits="1.2")
    make_task(user, credits="2.5", status=Status.COMPLETED)
    make_task(other_user, credits="10")
    response = su_client.get(CHANGELIST)
    page = response.content.decode()
    assert "1095.39" in page  # remaining credits
    assert response.context["evolink_filtered_credits"] == "13.7"
    response = su_client.get(CHANGELIST, {"user__id__exact": user.pk})
    assert response.context["evolink_filtered_credits"] == "3.7"
    response = su_client.get(CHANGELIST, {"status__exact": "failed"})
    assert response.context["evolink_filtered_credits"] == "0"
    # the balance is cached: one request to Evolink for three pages
    assert sum(1 for c in evolink.calls if c.request.url.endswith("/v1/credits")) == 1


@pytest.mark.parametrize("failure", ["connection", "503", "401", "garbage"])
def test_changelist_renders_when_evolink_is_down(su_client, evolink, user, failure):
    make_task(user)
    evolink.remove(responses.GET, f"{BASE}/v1/credits")
    url = f"{BASE}/v1/credits"
    if failure == "connection":
        evolink.add(responses.GET, url, body=requests.exceptions.ConnectionError("refused"))
    elif failure == "garbage":
        evolink.add(responses.GET, url, body="<html>oops</html>", status=200)
    else:
        evolink.add(responses.GET, url, status=int(failure), json=samples.error_answer(
            int(failure), message=f"bad key {API_KEY}"))
    response = su_client.get(CHANGELIST)
    assert response.status_code == 200
    page = response.content.decode()
    assert "unavailable" in page and "Evolink could not be reached" in page
    assert API_KEY not in page
    # asked once, not once per retry: the admin does not wait on retries
    assert sum(1 for c in evolink.calls if c.request.url.endswith("/v1/credits")) == 1


def test_changelist_renders_without_an_api_key(su_client, settings, user):
    settings.EVOLINK = {**settings.EVOLINK, "API_KEY": None}
    make_task(user)
    response = su_client.get(CHANGELIST)
    assert response.status_code == 200
    assert "unavailable" in response.content.decode()


#: Credits answers the admin and ``evolink_credits`` used to read differently.
CREDITS_ANSWERS = {
    # the documented shape: the API key's figures are not the account's
    "documented": samples.credits_answer(),
    # ``unlimited_credits`` as text is not ``true``; amounts as text or with trailing zeros
    "loose types": {"success": True, "message": "", "data": {
        "token": {"remaining_credits": 5, "unlimited_credits": "false", "used_credits": 1},
        "user": {"remaining_credits": 1000.0, "used_credits": "2.5000"},
    }},
    "unlimited key": samples.credits_answer(unlimited=True),
}


def _command_lines() -> list[str]:
    out = StringIO()
    call_command("evolink_credits", stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


@pytest.mark.parametrize("answer", CREDITS_ANSWERS.values(), ids=CREDITS_ANSWERS.keys())
def test_admin_and_command_show_the_same_figures(su_client, evolink, answer: dict[str, Any]):
    evolink.replace(responses.GET, f"{BASE}/v1/credits", json=answer)
    balance = su_client.get(CHANGELIST).context["evolink_balance"]
    assert balance["ok"]
    lines = _command_lines()
    # the account's balance is shown whether or not the key is unlimited
    assert f"Remaining credits: {balance['user_remaining']}" in lines
    assert f"Used credits: {balance['user_used']}" in lines
    if balance["unlimited"]:
        assert "This key: unlimited" in lines
    else:
        assert f"This key: {balance['token_remaining']} left" in lines


def test_filtered_credits_are_summed_only_over_an_exactly_counted_list(
        su_client, evolink, user, other_user, monkeypatch):
    """Past the paginator's exact count the sum would read every matching row on each
    page view: it is left out and the page says why; a narrower list is summed again."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_evolink.admin import ImageTaskAdmin

    monkeypatch.setattr(ImageTaskAdmin, "exact_count_limit", 2)
    for _ in range(3):
        make_task(user, credits="1.5")
    make_task(other_user, credits="4")
    with CaptureQueriesContext(connection) as queries:
        response = su_client.get(CHANGELIST)
    assert response.context["evolink_filtered_credits"] == ""
    assert "not summed over more than 2 tasks" in response.content.decode()
    assert not any('SUM("django_evolink_imagetask"."credits_reserved")' in q["sql"]
                   for q in queries.captured_queries)
    response = su_client.get(CHANGELIST, {"user__id__exact": other_user.pk})
    assert response.context["evolink_filtered_credits"] == "4"
    assert "not summed" not in response.content.decode()
