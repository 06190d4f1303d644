"""End to end over real HTTP: live server + emulator delivering callbacks to it."""

from __future__ import annotations

import time

import pytest
import requests

from django_evolink.models import EventSource, ImageTask
from tests.support.api import image_bytes, set_evolink

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_a_task_submitted_through_the_api_completes_by_callback(
        live_server, evolink_emulator, settings, django_user_model):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    django_user_model.objects.create_user("carol", password="pw-carol")
    # callbacks come back to the live server; polling is left out of this test
    set_evolink(settings, CALLBACK_BASE_URL=live_server.url, ALLOW_PRIVATE_URLS=True,
                UPLOAD_BACKEND="evolink")
    http = requests.Session()
    http.trust_env = False
    http.auth = ("carol", "pw-carol")
    response = http.post(
        f"{live_server.url}/evolink/tasks/",
        data={"prompt": "a watercolour", "n": "2"},
        files=[("images", ("in.png", image_bytes(600, 400), "image/png"))],
        timeout=30,
    )
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    assert response.json()["status"] in ("pending", "processing")
    detail = f"{live_server.url}/evolink/tasks/{task_id}/"

    deadline = time.monotonic() + 20
    data = http.get(detail, timeout=10).json()
    while data["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.1)
        data = http.get(detail, timeout=10).json()
    assert data["status"] == "completed", data
    assert data["progress"] == 100
    assert [image["index"] for image in data["images"]] == [0, 1]
    assert all(image["source_url"].startswith(evolink_emulator.url) for image in data["images"])

    task = ImageTask.objects.get(pk=task_id)
    assert task.callback_received_at is not None
    delivery = task.events.filter(source=EventSource.CALLBACK).order_by("received_at").first()
    assert delivery.payload["status"] == "completed"
    sent = evolink_emulator.callbacks.wait_for(1, task_id=task.evolink_id)
    assert sent[0].http_status == 200 and sent[0].url.startswith(live_server.url)
    evolink_emulator.wait_idle()
