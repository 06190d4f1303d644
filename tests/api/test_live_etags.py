"""Live updates, part 1: ETag / If-None-Match on task detail and list; detail watches."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from django_evolink.core import hooks
from django_evolink.core.transitions import apply_payload
from django_evolink.models import EventSource, GeneratedImage, ImageTask
from tests.support.api import LIST_URL, detail_url, make_task
from tests.support.evolink_samples import task_answer

pytest_plugins = ["tests.support.api_fixtures"]

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]


def test_detail_answers_an_etag_and_304_when_it_matches(api, user):
    task, _ = make_task(user, progress=10)
    first = api.get(detail_url(task.pk))
    etag = first["ETag"]
    assert first.status_code == 200 and etag.startswith('W/"')
    again = api.get(detail_url(task.pk), HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    # a list of tags, one of them ours (strong form too: weak comparison)
    listed = api.get(detail_url(task.pk), HTTP_IF_NONE_MATCH=f'"x", {etag.removeprefix("W/")}')
    assert listed.status_code == 304
    assert api.get(detail_url(task.pk), HTTP_IF_NONE_MATCH="*").status_code == 304
    assert api.get(detail_url(task.pk), HTTP_IF_NONE_MATCH='W/"other"').status_code == 200


def test_detail_etag_changes_with_progress_and_with_a_stored_image(api, user):
    task, _ = make_task(user, progress=10)
    etag = api.get(detail_url(task.pk))["ETag"]
    apply_payload(task, task_answer(status="processing", progress=40), source=EventSource.POLL)
    changed = api.get(detail_url(task.pk), HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed.json()["progress"] == 40
    etag = changed["ETag"]
    apply_payload(task, task_answer(status="completed", progress=100,
                                    results=["https://files.example.com/0.png"]),
                  source=EventSource.POLL)
    done = api.get(detail_url(task.pk), HTTP_IF_NONE_MATCH=etag)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    etag = done["ETag"]
    image = GeneratedImage.objects.get(task=task)
    image.file.save("0.png", ContentFile(b"png"), save=True)  # a download stores the copy
    stored = api.get(detail_url(task.pk), HTTP_IF_NONE_MATCH=etag)
    assert stored.status_code == 200 and stored.json()["images"][0]["url"]
    assert stored["ETag"] != etag


def test_another_users_task_is_404_not_304(api, other_user):
    task, _ = make_task(other_user)
    assert api.get(detail_url(task.pk), HTTP_IF_NONE_MATCH="*").status_code == 404


def test_list_answers_an_etag_per_page_and_filter(api, user):
    tasks = [make_task(user, evolink_id=f"task-unified-{i}")[0] for i in range(3)]
    first = api.get(LIST_URL)
    etag = first["ETag"]
    assert first.status_code == 200 and len(first.json()["results"]) == 3
    assert api.get(LIST_URL, HTTP_IF_NONE_MATCH=etag).status_code == 304
    # another filter or page size is another answer
    filtered = api.get(LIST_URL, {"status": "processing"}, HTTP_IF_NONE_MATCH=etag)
    assert filtered.status_code == 200
    assert api.get(LIST_URL, {"page_size": 2}, HTTP_IF_NONE_MATCH=etag).status_code == 200
    # a row that changes, or a new task, changes the tag
    apply_payload(tasks[0], task_answer(status="processing", progress=55,
                                        id="task-unified-0"), source=EventSource.POLL)
    moved = api.get(LIST_URL, HTTP_IF_NONE_MATCH=etag)
    assert moved.status_code == 200 and moved["ETag"] != etag
    etag = moved["ETag"]
    make_task(user, evolink_id="task-unified-9")
    assert api.get(LIST_URL, HTTP_IF_NONE_MATCH=etag).status_code == 200


def test_a_bad_filter_is_still_400_with_if_none_match(api, user):
    response = api.get(LIST_URL, {"status": "nonsense"}, HTTP_IF_NONE_MATCH="*")
    assert response.status_code == 400


# ------------------------------------------------------------------ detail = watching


def test_a_detail_request_watches_the_task_once_per_half_window(api, user, settings):
    settings.EVOLINK = {**settings.EVOLINK, "WATCH_SECONDS": 30.0, "WATCH_POLL_INTERVAL": 2.0}
    later = timezone.now() + dt.timedelta(minutes=5)
    task, _ = make_task(user, next_poll_at=later)
    asked: list = []
    hooks.watch_requested.connect(lambda sender, task_id, **kw: asked.append(task_id),
                                  weak=False, dispatch_uid="test-watch")
    try:
        before = timezone.now()
        api.get(detail_url(task.pk))
        task.refresh_from_db()
        assert task.watched_until >= before + dt.timedelta(seconds=29)
        # made due within the watched interval instead of in five minutes
        assert task.next_poll_at <= timezone.now() + dt.timedelta(seconds=2)
        marked = task.watched_until
        api.get(detail_url(task.pk))  # within half the window: no write, no new request
        task.refresh_from_db()
        assert task.watched_until == marked and asked == [task.pk]
    finally:
        hooks.watch_requested.disconnect(dispatch_uid="test-watch")


def test_a_final_task_is_not_watched(api, user):
    task, _ = make_task(user, status="completed", progress=100)
    api.get(detail_url(task.pk))
    assert ImageTask.objects.get(pk=task.pk).watched_until is None


def test_the_etag_depends_on_the_answers_language(api, user, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.middleware.locale.LocaleMiddleware"]
    task, _ = make_task(user, status="failed", progress=0, error_code="content_policy_violation",
                        error_message="blocked")
    english = api.get(detail_url(task.pk), HTTP_ACCEPT_LANGUAGE="en")
    japanese = api.get(detail_url(task.pk), HTTP_ACCEPT_LANGUAGE="ja",
                       HTTP_IF_NONE_MATCH=english["ETag"])
    assert japanese.status_code == 200  # not the English answer's 304
    assert japanese["ETag"] != english["ETag"]
    again = api.get(detail_url(task.pk), HTTP_ACCEPT_LANGUAGE="ja",
                    HTTP_IF_NONE_MATCH=japanese["ETag"])
    assert again.status_code == 304
    listed = api.get(LIST_URL, HTTP_ACCEPT_LANGUAGE="en")
    assert api.get(LIST_URL, HTTP_ACCEPT_LANGUAGE="ja",
                   HTTP_IF_NONE_MATCH=listed["ETag"]).status_code == 200
