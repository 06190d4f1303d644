"""Evolink's balance above the task changelist, and the page when Evolink is down."""
# ruff: noqa: F811 - pytest fixtures imported from tests.support.admin

from __future__ import annotations

import pytest
import requests
import responses

from django_evolink.models import Status
from tests.support import evolink_samples as samples
from tests.support.admin import (  # noqa: F401 - fixtures
    API_KEY,
    BASE,
    CHANGELIST,
    _fast_password_hasher,
    admin_user,
    evolink,
    make_task,
    su_client,
)

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
