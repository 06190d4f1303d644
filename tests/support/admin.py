"""Fixtures and builders for the admin tests (tests/admin/)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
import responses
from django.contrib.messages import get_messages
from django.core.cache import cache
from django.utils import timezone

from django_evolink.models import GeneratedImage, ImageTask, Status, TaskEvent
from tests.support import evolink_samples as samples

BASE = "https://api.evolink.test"
API_KEY = samples.API_KEY
CHANGELIST = "/admin/django_evolink/imagetask/"
EVENTS = "/admin/django_evolink/taskevent/"
IMAGES = "/admin/django_evolink/generatedimage/"
USAGE = "/admin/django_evolink/imagetask/usage/"


def change_url(task: ImageTask) -> str:
    return f"{CHANGELIST}{task.pk}/change/"


def make_task(user: Any = None, *, status: str = Status.PROCESSING, prompt: str = "a red fox",
              credits: str | None = "1.2", created: dt.datetime | None = None,
              evolink_id: str | None = "auto", images: int = 0, stored: bool = False,
              **fields: Any) -> ImageTask:
    """An ImageTask as if mirrored from Evolink (no HTTP)."""
    if evolink_id == "auto":
        evolink_id = f"task-unified-{uuid.uuid4().hex[:16]}"
    progress = {Status.QUEUED: 0, Status.PENDING: 0, Status.PROCESSING: 40}.get(status, 100)
    task = ImageTask.objects.create(
        user=user,
        evolink_id=evolink_id,
        model="wan2.5-image-to-image",
        prompt=prompt,
        image_urls=fields.pop("image_urls", ["https://example.com/in.png"]),
        n=max(1, images),
        status=status,
        progress=fields.pop("progress", progress),
        credits_reserved=None if credits is None else Decimal(credits),
        billing_rule="per_call",
        **fields,
    )
    if created is not None:
        ImageTask.objects.filter(pk=task.pk).update(created_at=created)
        task.created_at = created
    for i in range(images):
        GeneratedImage.objects.create(
            task=task,
            index=i,
            source_url=f"https://files.evolink.ai/results/{task.evolink_id}/{i}.png",
            source_expires_at=timezone.now() + dt.timedelta(hours=20),
            file=f"evolink/results/{task.pk}/{i}.png" if stored else "",
        )
    return task


def messages_of(response: Any) -> list[str]:
    """The admin messages a response left for the user."""
    return [str(m) for m in get_messages(response.wsgi_request)]


def post_action(client: Any, url: str, action: str, objs: list) -> Any:
    """Run the changelist ``action`` at ``url`` on ``objs``."""
    return client.post(url, {"action": action, "_selected_action": [str(o.pk) for o in objs],
                             "index": "0"})


def result_ids(response: Any) -> set:
    """The primary keys on a changelist page."""
    return {obj.pk for obj in response.context["cl"].result_list}


def add_event(task: ImageTask, payload: Any, **fields: Any) -> TaskEvent:
    return TaskEvent.objects.create(task=task, source=fields.pop("source", "poll"),
                                    payload=payload, **fields)


@pytest.fixture
def evolink():
    """``responses`` active for every test; Evolink's credit balance answers by default."""
    cache.clear()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, f"{BASE}/v1/credits", json=samples.credits_answer())
        yield mock
    cache.clear()


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")


@pytest.fixture
def su_client(client, admin_user, evolink):
    client.force_login(admin_user)
    return client


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """Creating users with the default hasher costs ~0.3 s each; these tests log in by force."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
