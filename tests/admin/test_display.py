"""What the admin shows never leaks a secret."""

from __future__ import annotations

import pytest
import responses

from django_evolink.admin import redact_data
from django_evolink.models import GeneratedImage, Status
from tests.support import evolink_samples as samples
from tests.support.admin import (
    API_KEY,
    BASE,
    CHANGELIST,
    EVENTS,
    IMAGES,
    USAGE,
    add_event,
    change_url,
    make_task,
    messages_of,
    post_action,
)

pytestmark = pytest.mark.django_db


def test_api_key_never_appears_on_any_admin_page(su_client, evolink, user, settings):
    secret_headers = {"Authorization": f"Bearer {API_KEY}", "X-Api-Key": API_KEY,
                      "Cookie": "sessionid=abc", "User-Agent": "Evolink/1.0"}
    task = make_task(user, status=Status.FAILED, images=1,
                     error_code="authentication_error",
                     error_message=f"Invalid key {API_KEY} (Bearer {API_KEY})",
                     prompt=f"leaked {API_KEY} prompt")
    GeneratedImage.objects.filter(task=task).update(download_error=f"refused for {API_KEY}")
    event = add_event(task, {"id": task.evolink_id, "status": "failed",
                             "error": {"message": f"key {API_KEY} is wrong"},
                             "callback_url": "https://site.example/evolink/callback/tok123/"},
                      headers=secret_headers, note=f"auth {API_KEY}", source="callback")
    image = task.images.get()
    evolink.add(responses.GET, f"{BASE}/v1/tasks/{task.evolink_id}", status=401,
                json=samples.error_answer(401, message=f"key {API_KEY} invalid"))
    evolink.add(responses.POST, f"{BASE}/v1/images/generations", status=401,
                json=samples.error_answer(401, message=f"key {API_KEY} invalid"))
    pages = [CHANGELIST, change_url(task), EVENTS, f"{EVENTS}{event.pk}/change/",
             IMAGES, f"{IMAGES}{image.pk}/change/", USAGE, f"{USAGE}?export=day",
             f"{USAGE}?export=user", f"{CHANGELIST}?q=leaked", "/admin/"]
    for url in pages:
        response = su_client.get(url)
        assert response.status_code == 200, url
        assert API_KEY not in response.content.decode(), url
    page = su_client.get(f"{EVENTS}{event.pk}/change/").content.decode()
    assert "tok123" not in page and "sessionid=abc" not in page and "[redacted]" in page
    assert "Evolink/1.0" in page  # harmless headers stay visible
    for action in ("refresh_from_evolink", "resubmit_as_new_task"):
        response = post_action(su_client, CHANGELIST, action, [task])
        for message in messages_of(response):
            assert API_KEY not in message, action
        follow = su_client.get(CHANGELIST)
        assert API_KEY not in follow.content.decode()
    response = post_action(su_client, EVENTS, "reapply_events", [event])
    assert all(API_KEY not in m for m in messages_of(response))
    assert API_KEY not in su_client.get(change_url(task)).content.decode()


def test_redact_data_by_key_and_value():
    data = {"Authorization": "Bearer x", "nested": [{"token": "t", "ok": f"a {API_KEY}"}],
            "empty_token": "", "n": 3}
    assert redact_data(data) == {"Authorization": "[redacted]",
                                 "nested": [{"token": "[redacted]", "ok": "a sk-evo-[redacted]"}],
                                 "empty_token": "", "n": 3}
