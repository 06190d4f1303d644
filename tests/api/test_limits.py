"""REST API and spending limits: 429 ``limit_exceeded`` with a detail and Retry-After, no
task kept, nothing sent to Evolink (the emulator counts what reached it)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from django_evolink.evolink.client import get_client
from django_evolink.models import ImageTask
from tests.support.api import LIST_URL, image_bytes, set_evolink, upload

pytest_plugins = ["tests.support.api_fixtures"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]

CREATES = ("POST", "/v1/images/generations")
UPLOADS = ("POST", "/api/v1/files/upload/stream")


@pytest.fixture
def image_url(settings, evolink_emulator):
    set_evolink(settings, ALLOW_PRIVATE_URLS=True)
    return get_client().upload_file(image_bytes(), file_name="in.png")["file_url"]


def create(api, url):
    return api.post(LIST_URL, {"prompt": "make it blue", "image_urls": [url]}, format="json")


def test_the_unfinished_tasks_limit_answers_429_without_retry_after(
        api, settings, evolink_emulator, image_url):
    set_evolink(settings, LIMITS={"ACTIVE_TASKS_PER_USER": 1})
    assert create(api, image_url).status_code == 201
    response = create(api, image_url)
    assert response.status_code == 429, response.content
    data = response.json()
    assert data["code"] == "limit_exceeded" and data["task"] is None
    assert data["limit"] == "ACTIVE_TASKS_PER_USER" and data["remaining"] == "0"
    assert "at most 1 unfinished tasks per user" in data["detail"]
    assert "Retry-After" not in response  # it frees up when a task finishes
    assert ImageTask.objects.count() == 1
    assert evolink_emulator.requests.count(*CREATES) == 1


def test_a_credit_limit_answers_429_with_retry_after(api, settings, evolink_emulator,
                                                     image_url):
    # the emulator reserves 1.2 credits per image
    set_evolink(settings, DEFAULT_IMAGE_CREDITS=1.2,
                LIMITS={"CREDITS_PER_USER_PER_DAY": 2.4})
    assert create(api, image_url).status_code == 201
    assert create(api, image_url).status_code == 201
    ImageTask.objects.update(created_at=timezone.now() - timezone.timedelta(hours=23))
    response = create(api, image_url)
    assert response.status_code == 429
    data = response.json()
    assert data["limit"] == "CREDITS_PER_USER_PER_DAY" and data["remaining"] == "0"
    assert "2.4 credits per user in 24 hours" in data["detail"]
    assert 3500 <= int(response["Retry-After"]) <= 3600  # the oldest leaves in an hour
    assert ImageTask.objects.count() == 2
    assert evolink_emulator.requests.count(*CREATES) == 2


def test_the_refusal_speaks_the_callers_language(api, settings, evolink_emulator, image_url):
    set_evolink(settings, LIMITS={"ACTIVE_TASKS_PER_USER": 0})
    response = api.post(LIST_URL, {"prompt": "p", "image_urls": [image_url]}, format="json",
                        HTTP_ACCEPT_LANGUAGE="ja")
    assert response.status_code == 429
    assert "Limit reached" not in response.json()["detail"]


def test_a_refused_multipart_create_uploads_nothing(api, settings, evolink_emulator):
    set_evolink(settings, ALLOW_PRIVATE_URLS=True, LIMITS={"ACTIVE_TASKS_PER_USER": 0})
    response = api.post(LIST_URL, {"prompt": "p", "images": [upload("in.png", image_bytes())]},
                        format="multipart")
    assert response.status_code == 429
    assert response.json()["code"] == "limit_exceeded"
    assert evolink_emulator.requests.count(*UPLOADS) == 0
    assert evolink_emulator.requests.count(*CREATES) == 0
    assert not ImageTask.objects.exists()
