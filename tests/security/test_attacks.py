"""Attacks: guessed callback tokens, replayed callbacks, cross-user access, CSRF."""

from __future__ import annotations

import json

import pytest
import responses
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from django_evolink.core import tokens
from django_evolink.models import EventOutcome, GeneratedImage, ImageTask, TaskEvent
from tests.support.api import (
    LIST_URL,
    PUBLIC_IMAGE,
    callback_path,
    detail_url,
    make_task,
    refresh_url,
    task_url,
)
from tests.support.evolink_samples import result_urls, task_answer

pytest_plugins = ["tests.support.api_fixtures"]
# the create throttle counts per user id in the cache, and SQLite reuses ids: start clean
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]


def post_callback(raw: str, body) -> object:
    return Client().post(callback_path(raw), json.dumps(body), content_type="application/json")


# ------------------------------------------------------------------ guessing tokens


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(guess=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF,
                                            exclude_characters="/?#%\\"),
                     min_size=1, max_size=300))
def test_guessed_tokens_answer_404_and_record_nothing(guess):
    task, raw = make_task(evolink_id=f"task-unified-1-{abs(hash(guess))}")
    if guess == raw:  # pragma: no cover - 256 random bits
        return
    response = post_callback(guess, task_answer(id=task.evolink_id, status="completed"))
    assert response.status_code == 404
    assert not TaskEvent.objects.exists()
    task.delete()


def test_near_miss_tokens_answer_404(client):
    task, raw = make_task()
    for guess in (raw[:-1], raw + "A", raw.upper(), raw[::-1], raw[:-1] + chr(ord(raw[-1]) ^ 1)):
        if guess != raw:
            assert post_callback(guess, task_answer(status="completed")).status_code == 404
    assert not TaskEvent.objects.exists()


def test_the_lookup_is_by_hash_so_no_prefix_timing_leaks():
    """The raw token never reaches the database: the query compares the SHA-256 of the
    presented token with an indexed column, so response time does not depend on how many
    leading characters of a real token were guessed right."""
    task, raw = make_task()
    with CaptureQueriesContext(connection) as queries:
        post_callback(raw[:-2] + "zz", task_answer(status="completed"))
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert tokens.hash_token(raw[:-2] + "zz") in sql
    assert raw[:-2] not in sql
    assert task.callback_token_hash == tokens.hash_token(raw)  # only the hash is stored
    assert raw not in json.dumps(list(ImageTask.objects.values()), default=str)


def test_tokens_are_256_bit_and_unique():
    raws = {tokens.new_token()[0] for _ in range(1000)}
    assert len(raws) == 1000 and all(len(r) >= 43 for r in raws)


# ------------------------------------------------------------- replayed callbacks


@pytest.mark.parametrize("trust", [False, True])
def test_another_tasks_callback_replayed_to_this_url_answers_400_and_changes_nothing(
        settings, trust):
    settings.EVOLINK = {**settings.EVOLINK, "TRUST_CALLBACK_BODY": trust}
    victim, victim_raw = make_task(evolink_id="task-unified-1-victim")
    other, _ = make_task(evolink_id="task-unified-1-other")
    replay = task_answer(id=other.evolink_id, status="completed",
                         results=result_urls(other.evolink_id, 2))
    with responses.RequestsMock() as rsps:  # nothing may be fetched
        response = post_callback(victim_raw, replay)
        assert not rsps.calls
    assert response.status_code == 400 and response.json()["outcome"] == "wrong_task"
    victim.refresh_from_db()
    assert victim.status == "processing" and not GeneratedImage.objects.exists()
    assert TaskEvent.objects.get(task=victim).outcome == EventOutcome.WRONG_TASK


def test_a_forged_completion_with_the_right_id_is_only_a_hint(settings):
    """Someone who learned a callback URL posts a completion with their own result URLs:
    the task is re-fetched from Evolink and Evolink's answer (still processing) wins."""
    task, raw = make_task()
    forged = task_answer(status="completed", results=["https://evil.example/x.png"])
    with responses.RequestsMock() as rsps:
        rsps.add(responses.GET, task_url(), json=task_answer(status="processing", progress=10))
        assert post_callback(raw, forged).status_code == 200
    task.refresh_from_db()
    assert task.status == "processing" and not GeneratedImage.objects.exists()


# ---------------------------------------------------------------- cross-user access


def test_another_users_task_is_invisible_everywhere(user, other_user, evolink_http):
    mine, _ = make_task(user=user, evolink_id="task-unified-1-mine")
    theirs, _ = make_task(user=other_user, evolink_id="task-unified-1-theirs")
    api = APIClient()
    api.force_authenticate(user)
    assert api.get(detail_url(theirs)).status_code == 404
    assert api.post(refresh_url(theirs)).status_code == 404
    listed = api.get(LIST_URL).json()["results"]
    assert [t["id"] for t in listed] == [str(mine.pk)]
    assert api.get(LIST_URL, {"status": "processing"}).json()["count"] == 1
    # the 404 for another user's task is the same as for a task that does not exist
    missing = api.get(detail_url("00000000-0000-4000-8000-000000000000"))
    assert api.get(detail_url(theirs)).json() == missing.json()
    assert not [c for c in evolink_http.calls if c.request.method == "GET"]


def test_stored_image_paths_are_keyed_by_the_unguessable_task_uuid(user):
    task, _ = make_task(user=user, status="completed")
    image = GeneratedImage.objects.create(task=task, index=0, source_url=result_urls()[0])
    from django_evolink.models import result_upload_to

    path = result_upload_to(image, "0.png")
    assert path == f"evolink/results/{task.pk}/0.png"
    assert task.pk.version == 4  # 122 random bits: not enumerable


# --------------------------------------------------------------------------- CSRF


def test_session_posts_without_the_csrf_token_are_refused_and_send_nothing(user, evolink_http):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    task, _ = make_task(user=user, evolink_id="task-unified-1-csrf")
    body = {"prompt": "p", "image_urls": [PUBLIC_IMAGE]}
    assert client.post(LIST_URL, body, content_type="application/json").status_code == 403
    assert client.post(refresh_url(task)).status_code == 403
    assert not evolink_http.calls and ImageTask.objects.count() == 1
    # with the token (cookie + header) the same requests go through
    client.get("/admin/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    created = client.post(LIST_URL, body, content_type="application/json",
                          HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201


# ------------------------------------------------------------ stored XSS in the admin

XSS = "<script>alert('xss')</script>"


def test_attacker_controlled_text_is_escaped_on_every_admin_page(staff_user, settings):
    """Prompts, image URLs, callback bodies and headers, and Evolink error messages are
    shown in the admin: each is escaped."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    task, raw = make_task(evolink_id="task-unified-1-xss", status="processing")
    ImageTask.objects.filter(pk=task.pk).update(
        prompt=f"a cat {XSS}", image_urls=[f"https://93.184.215.14/{XSS}.png"])
    failed, _ = make_task(evolink_id="task-unified-2-xss", status="failed",
                          error_code=XSS[:60], error_message=f"Evolink says {XSS}")
    Client().post(callback_path(raw), json.dumps({"id": XSS, "status": XSS, "note": XSS}),
                  content_type="application/json", HTTP_USER_AGENT=XSS, HTTP_X_EXTRA=XSS)
    Client().post(callback_path(raw), f"not json {XSS}", content_type="text/html")
    GeneratedImage.objects.create(task=task, index=0,
                                  source_url=f"https://93.184.215.14/{XSS}.png")
    admin = Client()
    admin.force_login(staff_user)
    pages = ["/admin/django_evolink/imagetask/",
             f"/admin/django_evolink/imagetask/{task.pk}/change/",
             f"/admin/django_evolink/imagetask/{failed.pk}/change/",
             "/admin/django_evolink/taskevent/",
             "/admin/django_evolink/generatedimage/"]
    pages += [f"/admin/django_evolink/taskevent/{e.pk}/change/"
              for e in TaskEvent.objects.all()]
    pages += [f"/admin/django_evolink/generatedimage/{i.pk}/change/"
              for i in GeneratedImage.objects.all()]
    assert TaskEvent.objects.count() == 2
    shown_escaped = 0
    for url in pages:
        page = admin.get(url)
        assert page.status_code == 200, url
        assert XSS.encode() not in page.content, url
        shown_escaped += b"&lt;script&gt;alert(" in page.content
    assert shown_escaped >= 5  # the text is on the pages, escaped
