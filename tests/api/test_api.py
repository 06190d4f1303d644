"""REST API: every row of SPEC's table, validation (JSON), permissions, throttling, CSRF."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
import requests
import responses
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from django_evolink.models import EventSource, GeneratedImage, ImageTask
from tests.support.api import (
    CREATE_URL,
    LIST_URL,
    PUBLIC_IMAGE,
    PUBLIC_IMAGE_2,
    create_calls,
    detail_url,
    make_task,
    refresh_url,
    set_evolink,
    task_url,
)
from tests.support.evolink_samples import TASK_ID, error_answer, task_answer

pytest_plugins = ["tests.support.api_fixtures"]

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]

SPEC_KEYS = {
    "id", "evolink_id", "model", "prompt", "image_urls", "n", "status", "progress",
    "estimated_time", "usage", "images", "error", "created_at", "updated_at", "completed_at",
}
SECRET_WORDS = ("token", "lease", "hash", "poll", "input_files", "sk-evo")


def create(api, **body):
    payload = {"prompt": "make it blue", "image_urls": [PUBLIC_IMAGE], **body}
    return api.post(LIST_URL, payload, format="json")


# --------------------------------------------------------------------------- create


def test_create_json_answers_201_with_the_task_per_spec(api, user, evolink_http):
    response = create(api, n=2)
    assert response.status_code == 201, response.content
    data = response.json()
    assert set(data) >= SPEC_KEYS
    assert data["evolink_id"] == TASK_ID
    assert data["status"] == "pending"
    assert data["n"] == 2
    assert data["image_urls"] == [PUBLIC_IMAGE]
    assert data["usage"] == {"billing_rule": "per_call", "credits_reserved": "1.2",
                             "user_group": "default"}
    assert data["images"] == [] and data["error"] is None and data["completed_at"] is None
    assert response["Location"].endswith(detail_url(data["id"]))
    text = json.dumps(data)
    assert not any(word in text for word in SECRET_WORDS)
    task = ImageTask.objects.get(pk=data["id"])
    assert task.user == user and task.evolink_id == TASK_ID
    sent = json.loads(create_calls(evolink_http)[0].request.body)
    assert sent == {"model": "wan2.5-image-to-image", "prompt": "make it blue",
                    "image_urls": [PUBLIC_IMAGE], "n": 2}


def test_create_sends_a_callback_url_when_configured(api, settings, evolink_http):
    set_evolink(settings, CALLBACK_BASE_URL="https://www.example.com")
    assert create(api).status_code == 201
    sent = json.loads(create_calls(evolink_http)[0].request.body)
    assert sent["callback_url"].startswith("https://www.example.com/evolink/callback/")
    task = ImageTask.objects.get()
    assert task.callback_token_hash and task.callback_token_hash not in sent["callback_url"]


def test_create_with_async_submit_answers_201_queued(api, settings, evolink_http):
    set_evolink(settings, ASYNC_SUBMIT=True)
    response = create(api)
    assert response.status_code == 201
    assert response.json()["status"] == "queued"
    assert response.json()["evolink_id"] is None
    assert create_calls(evolink_http) == []


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"image_urls": []}, "image_urls", "At least 1 image for wan2.5-image-to-image."),
        ({"image_urls": [PUBLIC_IMAGE, PUBLIC_IMAGE_2, PUBLIC_IMAGE]}, "image_urls",
         "At most 2 images for wan2.5-image-to-image."),
        ({"image_urls": PUBLIC_IMAGE}, "image_urls", "image_urls must be a list of 1 to 2 URLs."),
        ({"image_urls": ["ftp://93.184.215.14/a.png"]}, "image_urls",
         "Image 1: Only http/https URLs are allowed."),
        ({"image_urls": ["https://10.0.0.7/a.png"]}, "image_urls", "private"),
        ({"image_urls": ["https://127.0.0.1/a.png"]}, "image_urls", "loopback"),
        ({"image_urls": ["https://u:p@93.184.215.14/a.png"]}, "image_urls", "credentials"),
        ({"image_urls": [""]}, "image_urls", "Image 1: a URL string is required."),
        ({"image_urls": ["https://93.184.215.14/" + "a" * 2048]}, "image_urls",
         "at most 2048 characters"),
        ({"prompt": ""}, "prompt", "A prompt is required (1 to 2000 characters)."),
        ({"prompt": "   "}, "prompt", "A prompt is required"),
        ({"prompt": "x" * 2001}, "prompt", "At most 2000 characters"),
        ({"prompt": 5}, "prompt", "A prompt is required"),
        ({"n": 0}, "n", "n must be a whole number from 1 to 4 for wan2.5-image-to-image."),
        ({"n": 5}, "n", "from 1 to 4"),
        ({"n": True}, "n", "from 1 to 4"),
        ({"n": "2"}, "n", "from 1 to 4"),
        ({"n": 1.5}, "n", "from 1 to 4"),
        ({"model": "dall-e"}, "model", "Unknown model 'dall-e'. Allowed: wan2.5-image-to-image."),
    ],
)
def test_create_refuses_bad_json_with_field_keyed_messages(api, evolink_http, body, field,
                                                          message):
    response = create(api, **body)
    assert response.status_code == 400
    errors = response.json()
    assert field in errors, errors
    assert any(message in m for m in errors[field]), errors
    assert create_calls(evolink_http) == []
    assert not ImageTask.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "x" * 2000, "image_urls": [PUBLIC_IMAGE]},
        {"prompt": "p", "image_urls": [PUBLIC_IMAGE, PUBLIC_IMAGE_2], "n": 4},
        {"prompt": "p", "image_urls": [PUBLIC_IMAGE], "n": 1,
         "model": "wan2.5-image-to-image"},
        {"prompt": "p", "image_urls": ["https://93.184.215.14/" + "a" * 2000]},
    ],
)
def test_create_accepts_the_boundaries(api, evolink_http, body):
    response = api.post(LIST_URL, body, format="json")
    assert response.status_code == 201, response.content
    assert len(create_calls(evolink_http)) == 1


def test_create_refuses_a_body_that_is_not_an_object_or_not_json(api, evolink_http):
    response = api.post(LIST_URL, json.dumps([1, 2]), content_type="application/json")
    assert response.status_code == 400
    assert "non_field_errors" in response.json()
    response = api.post(LIST_URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    response = api.post(LIST_URL, "prompt=x", content_type="text/plain")
    assert response.status_code == 415
    assert create_calls(evolink_http) == []


def test_private_urls_are_allowed_when_the_setting_says_so(api, settings, evolink_http):
    set_evolink(settings, ALLOW_PRIVATE_URLS=True)
    assert create(api, image_urls=["http://127.0.0.1:9/a.png"]).status_code == 201


def test_image_urls_are_judged_by_what_their_host_resolves_to(api, evolink_http, monkeypatch):
    """What docs/rest-api.md promises: a name resolving to a private address (A or AAAA)
    is refused; a name that does not resolve here is accepted (this machine cannot fetch
    it anyway, and Evolink, on another network, may resolve it)."""
    answers = {
        "intranet.example.com": [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 0))],
        "v6.example.com": [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::7", 0, 0, 0))],
        "cdn.example.com": [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 0))],
    }

    def fake_getaddrinfo(host, *args, **kwargs):
        if host in answers:
            return answers[host]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    for host in ("intranet.example.com", "v6.example.com"):
        response = create(api, image_urls=[f"https://{host}/a.png"])
        assert response.status_code == 400, host
        assert "private or loopback" in " ".join(response.json()["image_urls"])
    assert create(api, image_urls=["https://cdn.example.com/a.png"]).status_code == 201
    ImageTask.objects.all().delete()  # the canned answer's Evolink id is used once
    assert create(api, image_urls=["https://no-such-name.invalid/a.png"]).status_code == 201
    assert len(create_calls(evolink_http)) == 2


# ------------------------------------------------------------- refusal mapping (emulator)


@pytest.fixture
def emulator_image(evolink_emulator):
    """A URL of an input image the emulator can download (uploaded to its files API)."""
    from django_evolink.evolink.client import get_client
    from tests.support.api import image_bytes

    data = get_client().upload_file(image_bytes(), file_name="in.png")
    return data["file_url"]


@pytest.mark.parametrize(
    ("evolink_status", "answer", "code"),
    [
        (400, 400, "invalid_request_error"),
        (404, 400, "not_found_error"),
        (413, 400, "request_too_large_error"),
        (401, 502, "authentication_error"),
        (403, 502, "permission_error"),
        (402, 503, "insufficient_quota_error"),
        (500, 502, "internal_server_error"),
        (502, 502, "upstream_error"),
        (503, 502, "service_unavailable_error"),
    ],
)
def test_evolink_refusals_map_per_spec(api, evolink_emulator, emulator_image, evolink_status,
                                       answer, code):
    evolink_emulator.faults.add_error("create", evolink_status, count=None)
    response = create(api, image_urls=[emulator_image])
    assert response.status_code == answer, response.content
    data = response.json()
    assert set(data) == {"detail", "code", "task"}
    assert data["code"] == code
    assert data["task"]["status"] == "failed"
    assert data["task"]["error"]["code"] == code
    task = ImageTask.objects.get(pk=data["task"]["id"])
    assert task.status == "failed" and task.error_code == code
    assert "sk-evo" not in response.content.decode()
    assert len(evolink_emulator.tasks) == 0


def test_evolink_rate_limit_after_retries_answers_429_with_retry_after(
        api, evolink_emulator, emulator_image):
    evolink_emulator.faults.add_error("create", 429, count=None, retry_after=7)
    response = create(api, image_urls=[emulator_image])
    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert response.json()["code"] == "rate_limit_error"
    assert response.json()["task"]["status"] == "failed"
    assert evolink_emulator.requests.count("POST", "/v1/images/generations") == 4  # 1 + 3 retries


def test_a_lost_create_answer_answers_502_outcome_unknown(api, evolink_emulator, emulator_image):
    evolink_emulator.faults.lose_create_answer(mode="reset")
    response = create(api, image_urls=[emulator_image])
    assert response.status_code == 502
    data = response.json()
    assert data["code"] == "outcome_unknown"
    assert data["task"]["error"]["code"] == "outcome_unknown"
    assert evolink_emulator.requests.count("POST", "/v1/images/generations") == 1


def test_an_unreachable_evolink_answers_502(api, settings):
    set_evolink(settings, BASE_URL="http://127.0.0.1:9", ALLOW_PRIVATE_URLS=True, MAX_RETRIES=0)
    response = create(api)
    assert response.status_code == 502
    assert response.json()["code"] == "connection_error"
    assert response.json()["task"]["status"] == "failed"


def test_a_missing_api_key_answers_502_without_naming_secrets(api, settings, monkeypatch):
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    set_evolink(settings, API_KEY=None)
    response = create(api)
    assert response.status_code == 502
    assert response.json()["code"] == "configuration_error"


def test_a_successful_create_through_the_emulator(api, evolink_emulator, emulator_image):
    response = create(api, image_urls=[emulator_image])
    assert response.status_code == 201
    assert response.json()["evolink_id"].startswith("task-unified-")


# ------------------------------------------------------------------------------ list


def _tasks(user, count, **fields):
    now = timezone.now()
    out = []
    for i in range(count):
        task, _ = make_task(user, evolink_id=f"task-{user.pk if user else 0}-{i}-{fields}",
                            created_at=now - timedelta(minutes=count - i), **fields)
        out.append(task)
    return out


def test_list_shows_own_tasks_newest_first_paginated(api, user, other_user, settings):
    set_evolink(settings, PAGE_SIZE=2)
    mine = _tasks(user, 3)
    _tasks(other_user, 2)
    response = api.get(LIST_URL)
    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 3
    assert [t["id"] for t in data["results"]] == [str(mine[2].pk), str(mine[1].pk)]
    assert data["next"] and data["previous"] is None
    page2 = api.get(data["next"]).json()
    assert [t["id"] for t in page2["results"]] == [str(mine[0].pk)]
    assert api.get(LIST_URL, {"page_size": 3}).json()["results"][2]["id"] == str(mine[0].pk)
    assert api.get(LIST_URL, {"page": 9}).status_code == 404


def test_staff_list_only_their_own_tasks(user, staff_user):
    _tasks(user, 2)
    client = APIClient()
    client.force_authenticate(staff_user)
    assert client.get(LIST_URL).json()["count"] == 0


def test_list_filters_by_status_and_validates_it(api, user):
    _tasks(user, 2)
    done, _ = make_task(user, status="completed", evolink_id="task-done")
    data = api.get(LIST_URL, {"status": "completed"}).json()
    assert [t["id"] for t in data["results"]] == [str(done.pk)]
    assert api.get(LIST_URL, {"status": "processing"}).json()["count"] == 2
    response = api.get(LIST_URL, {"status": "finished"})
    assert response.status_code == 400
    message = response.json()["status"][0]
    assert "queued, pending, processing, completed, failed, cancelled" in message


def test_list_does_not_run_a_query_per_task(api, user, django_assert_max_num_queries):
    for task in _tasks(user, 6, status="completed"):
        for i in range(2):
            GeneratedImage.objects.create(task=task, index=i, source_url=f"https://e.x/{i}.png")
    with django_assert_max_num_queries(3):  # count, page, images
        response = api.get(LIST_URL)
    assert len(response.json()["results"]) == 6
    assert all(len(t["images"]) == 2 for t in response.json()["results"])


# ---------------------------------------------------------------------------- detail


def test_detail_image_urls_are_absolute_once_stored_and_null_before(api, user):
    task, _ = make_task(user, status="completed")
    stored = GeneratedImage.objects.create(task=task, index=0, source_url="https://e.x/0.png",
                                           width=1024, height=768)
    stored.file.save("0.png", ContentFile(b"png"), save=True)
    GeneratedImage.objects.create(task=task, index=1, source_url="https://e.x/1.png")
    images = api.get(detail_url(task)).json()["images"]
    assert images[0]["url"].startswith("http://testserver/media/evolink/results/")
    assert images[0] == {**images[0], "index": 0, "source_url": "https://e.x/0.png",
                         "width": 1024, "height": 768}
    assert images[1]["url"] is None and images[1]["index"] == 1


def test_detail_error_is_code_and_message(api, user):
    task, _ = make_task(user, status="failed", error_code="content_policy",
                        error_message="Refused.")
    assert api.get(detail_url(task)).json()["error"] == {"code": "content_policy",
                                                         "message": "Refused."}


@pytest.mark.parametrize(
    ("who", "expected"),
    [("anonymous", 403), ("owner", 200), ("other", 404), ("staff", 200)],
)
def test_detail_permission_matrix(user, other_user, staff_user, who, expected):
    task, _ = make_task(user)
    client = APIClient()
    if who != "anonymous":
        client.force_authenticate({"owner": user, "other": other_user, "staff": staff_user}[who])
    response = client.get(detail_url(task))
    assert response.status_code == expected
    if expected == 404:
        assert response.json() == {"detail": "No task with this id.", "code": "not_found"}


def test_detail_of_unknown_or_malformed_ids_is_404(api):
    assert api.get(detail_url("0d1f8a9e-1c3b-4a3e-9d0f-5f2a1b7c9e11")).status_code == 404
    assert api.get("/evolink/tasks/not-a-uuid/").status_code == 404
    assert api.get("/evolink/tasks/not-a-uuid/").json()["code"] == "not_found"


@pytest.mark.parametrize(
    "path", [LIST_URL, "detail", "refresh"],
)
def test_anonymous_callers_are_refused_and_nothing_is_sent(anon, user, path, evolink_http):
    task, _ = make_task(user)
    url = {"detail": detail_url(task), "refresh": refresh_url(task)}.get(path, path)
    assert anon.get(url).status_code in (403, 405)
    response = anon.post(url, {"prompt": "x", "image_urls": [PUBLIC_IMAGE]}, format="json")
    assert response.status_code in (403, 405)
    assert response.status_code == 405 or response.json()["code"] == "not_authenticated"
    assert len(evolink_http.calls) == 0


def test_detail_does_not_allow_writes(api, user):
    task, _ = make_task(user)
    assert api.put(detail_url(task), {}, format="json").status_code == 405
    assert api.delete(detail_url(task)).status_code == 405


# --------------------------------------------------------------------------- refresh


@responses.activate
def test_refresh_asks_evolink_and_answers_the_updated_task(api, user):
    task, _ = make_task(user, status="pending")
    responses.get(task_url(), json=task_answer(status="processing", progress=40))
    response = api.post(refresh_url(task))
    assert response.status_code == 200
    assert response.json()["status"] == "processing"
    assert response.json()["progress"] == 40
    assert task.events.filter(source=EventSource.REFRESH).count() == 1


@responses.activate
def test_refresh_records_completed_images(api, user):
    task, _ = make_task(user)
    responses.get(task_url(), json=task_answer(status="completed"))
    data = api.post(refresh_url(task)).json()
    assert data["status"] == "completed"
    assert [i["source_url"] for i in data["images"]] == [
        f"https://files.evolink.ai/results/{TASK_ID}/0.png"]
    assert data["images"][0]["url"] is None


@pytest.mark.parametrize(("who", "expected"), [("other", 404), ("staff", 200),
                                               ("anonymous", 403)])
def test_refresh_permission_matrix(user, other_user, staff_user, who, expected):
    task, _ = make_task(user)
    client = APIClient()
    if who != "anonymous":
        client.force_authenticate(other_user if who == "other" else staff_user)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(task_url(), json=task_answer(status="processing"))
        assert client.post(refresh_url(task)).status_code == expected
        assert len(rsps.calls) == (1 if expected == 200 else 0)


@pytest.fixture
def staff_with(django_user_model):
    """A staff user (``is_staff``, not superuser) holding the named model permissions."""
    def make(*codenames: str):
        staff = django_user_model.objects.create_user(
            "clerk-" + "-".join(codenames or ("none",)), password="pw", is_staff=True)
        staff.user_permissions.set(Permission.objects.filter(
            content_type__app_label="django_evolink", codename__in=codenames))
        return django_user_model.objects.get(pk=staff.pk)  # fresh permission cache
    return make


@pytest.mark.parametrize(
    ("codenames", "detail", "refresh"),
    [((), 404, 404),
     (("view_imagetask",), 200, 403),
     (("change_imagetask",), 200, 200),
     (("view_imagetask", "change_imagetask"), 200, 200)],
    ids=["staff without permissions", "view only", "change", "view and change"],
)
def test_other_peoples_tasks_follow_the_model_permissions_not_is_staff(
        user, staff_with, codenames, detail, refresh):
    """``is_staff`` alone used to read and refresh every task through the API while the
    admin (model permissions) answered 403: the API now asks the same permissions."""
    task, _ = make_task(user)
    client = APIClient()
    client.force_authenticate(staff_with(*codenames))
    assert client.get(detail_url(task)).status_code == detail
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(task_url(), json=task_answer(status="processing"))
        response = client.post(refresh_url(task))
        assert response.status_code == refresh
        assert len(rsps.calls) == (1 if refresh == 200 else 0)
    if refresh == 403:
        assert "change permission" in response.json()["detail"]
    # their own tasks need no permission at all, and the list shows only those
    own, _ = make_task(client.handler._force_user, evolink_id="task-unified-1-own")
    assert client.get(detail_url(own)).status_code == 200
    assert [t["id"] for t in client.get(LIST_URL).json()["results"]] == [str(own.pk)]


@responses.activate
def test_refresh_of_a_task_evolink_forgot_marks_it_failed(api, user):
    task, _ = make_task(user)
    responses.get(task_url(), status=404, json=error_answer(404))
    data = api.post(refresh_url(task)).json()
    assert data["status"] == "failed" and data["error"]["code"] == "not_found_error"


@pytest.mark.parametrize(
    ("evolink_status", "answer", "code"),
    [(429, 429, "rate_limit_error"), (500, 502, "internal_server_error"),
     (401, 502, "authentication_error"), (503, 502, "service_unavailable_error")],
)
@responses.activate
def test_refresh_maps_evolink_errors(api, user, evolink_status, answer, code):
    task, _ = make_task(user)
    responses.get(task_url(), status=evolink_status, json=error_answer(evolink_status),
                  headers={"Retry-After": "3"} if evolink_status == 429 else {})
    response = api.post(refresh_url(task))
    assert response.status_code == answer
    assert response.json()["code"] == code
    assert response.json()["task"]["status"] == "processing"  # unchanged
    if answer == 429:
        assert response["Retry-After"] == "3"


@responses.activate
def test_refresh_network_failure_answers_502(api, user, settings):
    set_evolink(settings, MAX_RETRIES=0)
    task, _ = make_task(user)
    responses.get(task_url(), body=requests.exceptions.ConnectionError("down"))
    response = api.post(refresh_url(task))
    assert response.status_code == 502
    assert response.json()["task"]["id"] == str(task.pk)


def test_refresh_of_a_never_submitted_task_sends_nothing(api, user):
    task, _ = make_task(user, status="failed", evolink_id=None)
    with responses.RequestsMock() as rsps:
        assert api.post(refresh_url(task)).status_code == 200
        assert len(rsps.calls) == 0


# ------------------------------------------------------------------------ throttling


def test_create_is_throttled_by_its_scope(api, settings, evolink_http):
    set_evolink(settings, THROTTLE_RATES={"evolink_create": "2/minute"})
    assert create(api).status_code == 201
    evolink_http.replace(responses.POST, CREATE_URL,
                         json=task_answer(id="task-unified-2", status="pending"))
    assert create(api).status_code == 201
    response = create(api)
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["code"] == "throttled"
    assert len(create_calls(evolink_http)) == 2
    # listing is not throttled by the create scope
    for _ in range(3):
        assert api.get(LIST_URL).status_code == 200


@responses.activate
def test_refresh_is_throttled_by_its_scope(api, user, settings):
    set_evolink(settings, THROTTLE_RATES={"evolink_refresh": "1/hour"})
    task, _ = make_task(user)
    responses.get(task_url(), json=task_answer(status="processing"))
    assert api.post(refresh_url(task)).status_code == 200
    assert api.post(refresh_url(task)).status_code == 429
    assert len(responses.calls) == 1


def test_throttles_count_per_user(api, other_user, settings, evolink_http):
    set_evolink(settings, THROTTLE_RATES={"evolink_create": "1/minute"})
    assert create(api).status_code == 201
    assert create(api).status_code == 429
    other = APIClient()
    other.force_authenticate(other_user)
    evolink_http.replace(responses.POST, CREATE_URL,
                         json=task_answer(id="task-unified-2", status="pending"))
    assert create(other).status_code == 201


def test_a_rate_of_none_and_replaced_throttle_classes_turn_throttling_off(
        api, settings, evolink_http):
    set_evolink(settings, THROTTLE_RATES={"evolink_refresh": "1/hour", "evolink_create": None})
    for i in range(3):
        evolink_http.replace(responses.POST, CREATE_URL,
                             json=task_answer(id=f"task-unified-{i}", status="pending"))
        assert create(api).status_code == 201
    set_evolink(settings, THROTTLE_RATES={"evolink_create": "1/hour"}, THROTTLE_CLASSES=[])
    evolink_http.replace(responses.POST, CREATE_URL,
                         json=task_answer(id="task-unified-9", status="pending"))
    assert create(api).status_code == 201


def test_permission_classes_are_replaceable(anon, settings, user):
    make_task(user)
    set_evolink(settings, PERMISSION_CLASSES=["rest_framework.permissions.AllowAny"])
    response = anon.get(LIST_URL)
    assert response.status_code == 200 and response.json()["count"] == 0
    set_evolink(settings, PERMISSION_CLASSES=["rest_framework.permissions.IsAdminUser"])
    client = APIClient()
    client.force_authenticate(user)
    assert client.get(LIST_URL).status_code == 403


# ------------------------------------------------------------------------------ CSRF


def test_session_authenticated_posts_need_the_csrf_token(user, evolink_http):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    body = json.dumps({"prompt": "p", "image_urls": [PUBLIC_IMAGE]})
    response = client.post(LIST_URL, body, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert create_calls(evolink_http) == []
    client.get(LIST_URL)  # any page: set the CSRF cookie
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token
    response = client.post(LIST_URL, body, content_type="application/json",
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content


def test_session_refresh_needs_the_csrf_token(user):
    task, _ = make_task(user)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    with responses.RequestsMock() as rsps:
        assert client.post(refresh_url(task)).status_code == 403
        assert len(rsps.calls) == 0
