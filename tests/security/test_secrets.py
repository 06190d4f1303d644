"""The API key never leaks: logs (DEBUG), events, admin pages, exceptions, error answers.

A whole lifecycle is driven with Evolink answering through ``responses``, including error
answers that *echo the key back* (the worst case: an upstream that quotes the bad
credential), and everything a person or a log collector could see is searched for it.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
import requests
import responses
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from django_evolink import services
from django_evolink.background import sweep
from django_evolink.evolink.client import get_client
from django_evolink.exceptions import EvolinkError
from django_evolink.models import ImageTask, TaskEvent
from tests.support.api import BASE, CREATE_URL, LIST_URL, PUBLIC_IMAGE, callback_path
from tests.support.evolink_samples import error_answer, result_urls, task_answer

pytestmark = [pytest.mark.django_db]

KEY = "sk-evo-test-key-0123456789abcdef"
#: The distinctive part of the key (what a leak would show even if re-formatted).
KEY_BODY = "test-key-0123456789abcdef"


def _no_key(text: str, where: str) -> None:
    assert KEY_BODY not in text, f"API key found in {where}: {text[:300]!r}"


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage()]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    return "\n".join(parts)


def test_the_key_appears_nowhere_over_a_whole_lifecycle_with_errors(
        settings, caplog, staff_user, monkeypatch):
    settings.EVOLINK = {**settings.EVOLINK, "API_KEY": KEY, "MAX_RETRIES": 1,
                        "RETRY_BACKOFF": 0.0, "RETRY_MAX_WAIT": 0.0,
                        "CALLBACK_BASE_URL": "https://www.example.com",
                        "THROTTLE_CLASSES": []}
    settings.DEBUG_PROPAGATE_EXCEPTIONS = False
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", lambda pk: None)
    cache.clear()
    seen: list[tuple[str, str]] = []  # (where, text)
    api = APIClient()
    api.force_authenticate(staff_user)
    echo = f"Invalid API key {KEY} (Authorization: Bearer {KEY})"
    task_ids = iter(f"task-unified-1-{i}" for i in range(100))

    def create_ok(request):
        assert request.headers["Authorization"] == f"Bearer {KEY}"  # sent, as it must be
        return 200, {}, json.dumps(task_answer(id=next(task_ids), status="pending"))

    with caplog.at_level(logging.DEBUG), responses.RequestsMock(
            assert_all_requests_are_fired=False) as rsps:
        # 1. a good create, a poll, a refresh, a completion by callback
        rsps.add_callback(responses.POST, CREATE_URL, callback=create_ok)
        answer = api.post(LIST_URL, {"prompt": "p", "image_urls": [PUBLIC_IMAGE]}, format="json")
        seen.append(("create answer", answer.content.decode()))
        task = ImageTask.objects.get(pk=answer.json()["id"])
        rsps.add(responses.GET, f"{BASE}/v1/tasks/{task.evolink_id}",
                 json=task_answer(id=task.evolink_id, status="processing", progress=50))
        seen.append(("refresh answer",
                     api.post(f"/evolink/tasks/{task.pk}/refresh/").content.decode()))
        sweep.run_sweep(all_tasks=True)
        raw = "tok-" + "x" * 40
        from django_evolink.core import tokens

        ImageTask.objects.filter(pk=task.pk).update(callback_token_hash=tokens.hash_token(raw))
        rsps.replace(responses.GET, f"{BASE}/v1/tasks/{task.evolink_id}",
                     json=task_answer(id=task.evolink_id, status="completed",
                                      results=result_urls(task.evolink_id, 1)))
        cb = Client().post(callback_path(raw), json.dumps(task_answer(
            id=task.evolink_id, status="completed")), content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {KEY}", HTTP_X_API_KEY=KEY)
        seen.append(("callback answer", cb.content.decode()))
        # 2. Evolink refusals that echo the key, for create and for refresh
        rsps.remove(responses.POST, CREATE_URL)
        for status in (400, 401, 402, 403, 429, 500, 502, 503):
            rsps.upsert(responses.POST, CREATE_URL, status=status,
                        json=error_answer(status, message=echo),
                        headers={"Retry-After": "0"} if status == 429 else {})
            answer = api.post(LIST_URL, {"prompt": "p", "image_urls": [PUBLIC_IMAGE]},
                              format="json")
            seen.append((f"create answer {status}", answer.content.decode()))
        rsps.upsert(responses.POST, CREATE_URL, status=500, body=f"<html>{echo}</html>")
        seen.append(("create answer html 500", api.post(
            LIST_URL, {"prompt": "p", "image_urls": [PUBLIC_IMAGE]}, format="json"
        ).content.decode()))
        # a lost answer (outcome unknown) and an unreachable Evolink
        rsps.upsert(responses.POST, CREATE_URL,
                    body=requests.exceptions.ReadTimeout(f"read timed out ({echo})"))
        seen.append(("create answer lost", api.post(
            LIST_URL, {"prompt": "p", "image_urls": [PUBLIC_IMAGE]}, format="json"
        ).content.decode()))
        other = ImageTask.objects.create(model="wan2.5-image-to-image", prompt="p",
                                         image_urls=[PUBLIC_IMAGE], status="processing",
                                         evolink_id="task-unified-1-refresh")
        rsps.add(responses.GET, f"{BASE}/v1/tasks/{other.evolink_id}", status=401,
                 json=error_answer(401, message=echo))
        seen.append(("refresh answer 401", api.post(
            f"/evolink/tasks/{other.pk}/refresh/").content.decode()))
        rsps.add(responses.GET, f"{BASE}/v1/credits", status=500, body=echo)
        # 3. exceptions raised to Python callers
        for call in (lambda: get_client().get_task(other.evolink_id),
                     lambda: get_client().get_credits(),
                     lambda: services.create_task(prompt="p", image_urls=[PUBLIC_IMAGE])):
            with pytest.raises(EvolinkError) as caught:
                call()
            exc = caught.value
            as_dict = exc.as_dict() if hasattr(exc, "as_dict") else {}
            seen.append(("exception", f"{exc}\n{exc!r}\n{exc.args}\n"
                         + json.dumps([getattr(exc, "body", None), as_dict], default=str)))
        seen.append(("client repr", repr(get_client())))
        # 4. the admin, every page a staff member opens
        admin = Client()
        admin.force_login(staff_user)
        for url in ("/admin/django_evolink/imagetask/",
                    f"/admin/django_evolink/imagetask/{task.pk}/change/",
                    f"/admin/django_evolink/imagetask/{other.pk}/change/",
                    "/admin/django_evolink/taskevent/",
                    "/admin/django_evolink/generatedimage/"):
            page = admin.get(url)
            assert page.status_code == 200, url
            seen.append((f"admin {url}", page.content.decode()))
        for event in TaskEvent.objects.all():
            seen.append((f"event {event.pk}", admin.get(
                f"/admin/django_evolink/taskevent/{event.pk}/change/").content.decode()))
    # 5. what was stored
    for event in TaskEvent.objects.all():
        seen.append((f"stored event {event.pk}", json.dumps(
            [event.payload, event.headers, event.note], default=str)))
    for row in ImageTask.objects.values():
        seen.append(("stored task", json.dumps(row, default=str)))
    for record in caplog.records:
        seen.append((f"log {record.name}:{record.levelname}", _record_text(record)))
    assert len(caplog.records) > 20 and TaskEvent.objects.count() > 10
    assert any(re.search("Invalid API key", text) for _, text in seen)  # echoes did arrive
    for where, text in seen:
        _no_key(text, where)
    # the bearer header the callback carried is stored redacted
    delivery = TaskEvent.objects.filter(note__startswith="callback delivery").first()
    assert delivery.headers["Authorization"] == "[redacted]"
    assert delivery.headers["X-Api-Key"] == "[redacted]"


def test_the_key_is_not_in_debug_logs_of_a_real_http_lifecycle(evolink_emulator, settings,
                                                                caplog):
    """The emulator over real HTTP: urllib3 and our loggers at DEBUG."""
    from tests.conftest import make_image_bytes

    key = settings.EVOLINK["API_KEY"]
    with caplog.at_level(logging.DEBUG):
        url = get_client().upload_file(make_image_bytes(), file_name="a.png")["file_url"]
        task = services.create_task(prompt="p", image_urls=[url])
        evolink_emulator.complete_task(task.evolink_id)
        services.refresh_task(task)
        settings.EVOLINK = {**settings.EVOLINK, "API_KEY": "sk-evo-wrong-key-zzzzzzzzzz"}
        evolink_emulator.api_keys = {key}
        try:
            with pytest.raises(EvolinkError) as caught:
                get_client().get_credits()
        finally:
            evolink_emulator.api_keys = None  # the shared emulator accepts any key again
    assert caught.value.status == 401
    assert caplog.records
    for record in caplog.records:
        text = _record_text(record)
        assert key.split("sk-evo-")[1] not in text and "wrong-key" not in text, text
