"""What the admin shows never leaks a secret."""

from __future__ import annotations

import re

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


def test_client_image_urls_are_never_fetched_by_staff_browsers(su_client, user):
    """The client's image URLs may name internal hosts: an ``<img>`` (or a link) of one
    made every staff browser fetch it and reveal its address. They are shown as text;
    only the stored copies are shown as images, on the list and on the change page."""
    internal = "http://intranet.corp.internal/secret.png?who=staff"
    task = make_task(user, image_urls=[internal, "https://203.0.113.9/a.png"])
    stored = make_task(user, image_urls=[internal], input_files=["evolink/inputs/x/copy.png"])
    pages = [su_client.get(CHANGELIST).content.decode(),
             su_client.get(change_url(task)).content.decode(),
             su_client.get(change_url(stored)).content.decode()]
    for page in pages:
        for tag in re.findall(r"<(?:img|a|link|script|iframe|source)\b[^>]*>", page):
            assert "intranet.corp.internal" not in tag and "203.0.113.9" not in tag, tag
    assert "http://intranet.corp.internal/secret.png?who=staff" in pages[1]  # as text
    assert "/media/evolink/inputs/x/copy.png" in pages[2]  # the stored copy is an image
    assert 'src="/media/evolink/inputs/x/copy.png"' in pages[0]
