"""The admin and the catalogue's models: filter, usage and resubmit by model."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
import responses
from django.utils import timezone

from django_evolink.models import ImageTask, Status
from tests.support import evolink_samples as samples
from tests.support.admin import (
    CHANGELIST,
    USAGE,
    change_url,
    make_task,
    messages_of,
    post_action,
    result_ids,
)
from tests.support.api import BASE

pytestmark = pytest.mark.django_db

DAY = timezone.make_aware(dt.datetime(2025, 5, 2, 12, 0))


def model_task(user, model, *, params=None, billing_rule="per_call", credits="1", **fields):
    task = make_task(user, credits=credits, created=DAY, **fields)
    ImageTask.objects.filter(pk=task.pk).update(model=model, params=params or {},
                                                billing_rule=billing_rule)
    task.refresh_from_db()
    return task


@pytest.fixture
def every_model(settings):
    settings.EVOLINK = {**settings.EVOLINK, "MODELS": None}


def test_changelist_filters_by_model(su_client, user):
    wan = make_task(user)
    t2i = model_task(user, "wan2.5-text-to-image", image_urls=[])
    response = su_client.get(CHANGELIST, {"model": "wan2.5-text-to-image"})
    assert result_ids(response) == {t2i.pk}
    assert wan.pk not in result_ids(response)
    choices = [c["display"] for c in response.context["cl"].filter_specs[2].choices(
        response.context["cl"])]
    assert "doubao-seedream-4.5" in choices  # every catalogue model can be chosen


def test_usage_per_model_and_billing_rule(su_client, user):
    model_task(user, "wan2.5-image-to-image", credits="1.2", status=Status.COMPLETED)
    model_task(user, "wan2.5-image-to-image", credits="1.2", status=Status.FAILED)
    model_task(user, "gpt-image-2", billing_rule="per_token", credits="0.0375",
               status=Status.COMPLETED)
    model_task(None, "doubao-seedream-4.5", billing_rule="per_second", credits=None,
               status=Status.QUEUED, evolink_id=None)
    response = su_client.get(USAGE, {"start": "2025-05-01", "end": "2025-05-03"})
    rows = [(m["model"], m["billing_rule"], m["tasks"], m["credits_text"])
            for m in response.context["models"]]
    assert rows == [("wan2.5-image-to-image", "per_call", 2, "2.4"),
                    ("gpt-image-2", "per_token", 1, "0.0375"),
                    ("doubao-seedream-4.5", "per_second", 1, "0")]
    page = response.content.decode()
    assert 'id="usage-per-model"' in page and "?model=gpt-image-2" in page
    exported = su_client.get(USAGE, {"start": "2025-05-01", "end": "2025-05-03",
                                     "export": "model"}).content.decode()
    assert list(csv.reader(io.StringIO(exported))) == [
        ["model", "billing_rule", "tasks", "completed", "failed", "credits_reserved"],
        ["wan2.5-image-to-image", "per_call", "2", "1", "1", "2.4"],
        ["gpt-image-2", "per_token", "1", "1", "0", "0.0375"],
        ["doubao-seedream-4.5", "per_second", "1", "0", "0", "0"],
    ]


def test_change_page_shows_the_parameters(su_client, user):
    task = model_task(user, "wan2.5-text-to-image", image_urls=[],
                      params={"size": "1024x1024", "prompt_extend": False})
    page = su_client.get(change_url(task)).content.decode()
    assert "<code>size</code> = <code>&quot;1024x1024&quot;</code>" in page
    assert "<code>prompt_extend</code> = <code>false</code>" in page


def test_resubmit_keeps_model_and_parameters(su_client, evolink, user, every_model):
    old = model_task(user, "wan2.5-text-to-image", image_urls=[], status=Status.FAILED,
                     params={"size": "1024x1024", "prompt_extend": False})
    evolink.add(responses.POST, f"{BASE}/v1/images/generations",
                json=samples.task_answer("task-unified-new-2", status="pending"))
    response = post_action(su_client, CHANGELIST, "resubmit_as_new_task", [old])
    assert response.status_code == 302
    new = ImageTask.objects.exclude(pk=old.pk).get()
    assert (new.model, new.params, new.image_urls) == (
        "wan2.5-text-to-image", {"size": "1024x1024", "prompt_extend": False}, [])
    [call] = [c for c in evolink.calls if c.request.url.endswith("/v1/images/generations")]
    assert json.loads(call.request.body) == {
        "model": "wan2.5-text-to-image", "prompt": "a red fox", "n": 1,
        "size": "1024x1024", "prompt_extend": False}
    assert any("resubmitted" in m for m in messages_of(response))


def test_resubmit_of_a_model_without_n_sends_no_n(su_client, evolink, user, every_model):
    old = model_task(user, "z-image-turbo", image_urls=[], status=Status.FAILED,
                     params={"size": "1:1"})
    evolink.add(responses.POST, f"{BASE}/v1/images/generations",
                json=samples.task_answer("task-unified-new-3", status="pending"))
    post_action(su_client, CHANGELIST, "resubmit_as_new_task", [old])
    [call] = [c for c in evolink.calls if c.request.url.endswith("/v1/images/generations")]
    assert json.loads(call.request.body) == {"model": "z-image-turbo", "prompt": "a red fox",
                                             "size": "1:1"}


def test_resubmit_of_a_model_no_longer_allowed_is_refused(su_client, evolink, user):
    old = model_task(user, "z-image-turbo", image_urls=[], status=Status.FAILED)
    response = post_action(su_client, CHANGELIST, "resubmit_as_new_task", [old])
    assert any("no longer valid" in m and "not allowed on this site" in m
               for m in messages_of(response))
    assert ImageTask.objects.count() == 1
