"""The admin actions: refresh, download missing images, resubmit, re-apply, buttons."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
import responses
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.test import override_settings
from django.utils import timezone

from django_evolink.background.sweep import run_sweep
from django_evolink.models import EventSource, GeneratedImage, ImageTask, Status, TaskEvent
from tests.support import evolink_samples as samples
from tests.support.admin import (
    BASE,
    CHANGELIST,
    EVENTS,
    add_event,
    change_url,
    make_task,
    messages_of,
    post_action,
)

pytestmark = pytest.mark.django_db


def _action_choices(response) -> set:
    return {c for c, _ in response.context["action_form"].fields["action"].choices}


def test_actions_are_listed(su_client, user):
    make_task(user)
    choices = _action_choices(su_client.get(CHANGELIST))
    assert {"refresh_from_evolink", "download_missing_images", "resubmit_as_new_task"} <= choices
    add_event(ImageTask.objects.get(), {"id": "x"})
    assert "reapply_events" in _action_choices(su_client.get(EVENTS))


def test_refresh_action_applies_evolinks_answer_as_admin(su_client, evolink, user):
    task = make_task(user, status=Status.PROCESSING)
    evolink.add(responses.GET, f"{BASE}/v1/tasks/{task.evolink_id}",
                json=samples.task_answer(task.evolink_id, status="completed",
                                         results=samples.result_urls(task.evolink_id, 1)))
    never = make_task(user, status=Status.QUEUED, evolink_id=None)
    response = post_action(su_client, CHANGELIST, "refresh_from_evolink", [task, never])
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == Status.COMPLETED and task.images.count() == 1
    event = task.events.get()
    assert event.source == EventSource.ADMIN and event.changed
    assert LogEntry.objects.filter(object_id=str(task.pk)).exists()
    text = " ".join(messages_of(response))
    assert "processing → completed" in text
    assert "never accepted by Evolink" in text


@pytest.mark.parametrize("failure", ["connection", "503"])
def test_refresh_action_reports_evolink_down(su_client, evolink, user, failure):
    task = make_task(user, status=Status.PROCESSING)
    url = f"{BASE}/v1/tasks/{task.evolink_id}"
    if failure == "connection":
        evolink.add(responses.GET, url, body=requests.exceptions.ConnectionError("refused"))
    else:
        evolink.add(responses.GET, url, status=503, json=samples.error_answer(503))
    response = post_action(su_client, CHANGELIST, "refresh_from_evolink", [task])
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == Status.PROCESSING
    assert any("could not be asked" in m for m in messages_of(response))


def test_refresh_of_a_task_evolink_forgot_marks_it_failed(su_client, evolink, user):
    task = make_task(user, status=Status.PROCESSING)
    evolink.add(responses.GET, f"{BASE}/v1/tasks/{task.evolink_id}", status=404,
                json=samples.error_answer(404))
    post_action(su_client, CHANGELIST, "refresh_from_evolink", [task])
    task.refresh_from_db()
    assert task.status == Status.FAILED and task.error_code == "not_found_error"
    assert task.events.get().source == EventSource.ADMIN


def test_download_action_queues_missing_images(su_client, user, monkeypatch):
    queued = []
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", queued.append)
    missing = make_task(user, status=Status.COMPLETED, images=2)
    stored = make_task(user, status=Status.COMPLETED, images=1, stored=True)
    running = make_task(user, status=Status.PROCESSING)
    response = post_action(su_client, CHANGELIST, "download_missing_images",
                            [missing, stored, running])
    assert response.status_code == 302
    assert queued == [missing.pk]
    text = " ".join(messages_of(response))
    assert "download of 2 missing images queued" in text
    assert "already stored" in text and "not completed" in text


def test_download_action_reports_a_queue_failure(su_client, user, monkeypatch):
    def broken(task_id):
        raise ConnectionError("broker down")

    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", broken)
    task = make_task(user, status=Status.COMPLETED, images=1)
    response = post_action(su_client, CHANGELIST, "download_missing_images", [task])
    assert response.status_code == 302
    assert any("could not be queued" in m for m in messages_of(response))


def test_resubmit_action_creates_a_new_task(su_client, evolink, user):
    old = make_task(user, status=Status.FAILED, prompt="resubmit me", error_code="x")
    evolink.add(responses.POST, f"{BASE}/v1/images/generations",
                json=samples.task_answer("task-unified-new-1", status="pending"))
    response = post_action(su_client, CHANGELIST, "resubmit_as_new_task", [old])
    assert response.status_code == 302
    new = ImageTask.objects.exclude(pk=old.pk).get()
    assert (new.prompt, new.image_urls, new.n, new.model, new.user) == (
        old.prompt, old.image_urls, old.n, old.model, user)
    assert new.evolink_id == "task-unified-new-1" and new.status == Status.PENDING
    assert any(str(new.pk)[:8] in m and "resubmitted" in m for m in messages_of(response))


def test_resubmit_refused_by_evolink_is_reported(su_client, evolink, user):
    old = make_task(user, status=Status.FAILED)
    evolink.add(responses.POST, f"{BASE}/v1/images/generations", status=402,
                json=samples.error_answer(402))
    response = post_action(su_client, CHANGELIST, "resubmit_as_new_task", [old])
    assert response.status_code == 302
    new = ImageTask.objects.exclude(pk=old.pk).get()
    assert new.status == Status.FAILED and new.error_code == "insufficient_quota_error"
    assert any("refused by Evolink" in m for m in messages_of(response))


def test_resubmit_refused_by_a_limit_keeps_nothing_and_says_so(su_client, evolink, user,
                                                                settings):
    settings.EVOLINK = {**settings.EVOLINK, "LIMITS": {"ACTIVE_TASKS_PER_USER": 1}}
    busy = make_task(user, status=Status.PENDING)
    response = post_action(su_client, CHANGELIST, "resubmit_as_new_task", [busy])
    assert response.status_code == 302
    assert ImageTask.objects.count() == 1 and not evolink.calls
    assert any("not resubmitted" in m and "at most 1 unfinished tasks" in m
               for m in messages_of(response))


def test_resubmit_of_an_invalid_request_sends_nothing(su_client, evolink, user):
    old = make_task(user, status=Status.FAILED, image_urls=[])
    ImageTask.objects.filter(pk=old.pk).update(image_urls=[])
    response = post_action(su_client, CHANGELIST, "resubmit_as_new_task", [old])
    assert ImageTask.objects.count() == 1
    assert any("no longer valid" in m for m in messages_of(response))


def test_actions_refuse_too_many_rows(su_client, evolink, user, monkeypatch):
    from django_evolink.admin import ImageTaskAdmin

    monkeypatch.setattr(ImageTaskAdmin, "max_action_rows", 2)
    tasks = [make_task(user) for _ in range(3)]
    response = post_action(su_client, CHANGELIST, "refresh_from_evolink", tasks)
    assert any("at most 2" in m for m in messages_of(response))
    assert not TaskEvent.objects.exists()


def test_change_page_button_runs_the_action_and_returns(su_client, evolink, user):
    task = make_task(user, status=Status.PENDING)
    evolink.add(responses.GET, f"{BASE}/v1/tasks/{task.evolink_id}",
                json=samples.task_answer(task.evolink_id, status="processing", progress=60))
    url = f"{CHANGELIST}{task.pk}/evolink-action/refresh_from_evolink/"
    assert su_client.get(url).status_code == 405
    response = su_client.post(url)
    assert response.status_code == 302 and response["Location"] == change_url(task)
    task.refresh_from_db()
    assert task.status == Status.PROCESSING and task.progress == 60
    assert su_client.post(f"{CHANGELIST}{task.pk}/evolink-action/nope/").status_code == 403


def test_reapply_event_action(su_client, user):
    """An answer of Evolink to the site's own request (here a poll) is applied as recorded."""
    task = make_task(user, status=Status.PROCESSING)
    answer = samples.task_answer(task.evolink_id, status="completed")
    event = add_event(task, answer, source="poll", outcome="error")
    empty = add_event(task, None, source="system")
    response = post_action(su_client, EVENTS, "reapply_events", [event, empty])
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == Status.COMPLETED
    replay = task.events.filter(source=EventSource.ADMIN).get()
    assert replay.note == f"re-applied event {event.pk}" and replay.changed
    assert replay.payload == answer
    text = " ".join(messages_of(response))
    assert "processing → completed" in text and "no recorded payload" in text
    # re-applying again changes nothing and says so
    response = post_action(su_client, EVENTS, "reapply_events", [event])
    assert any("Nothing new" in m for m in messages_of(response))


FORGED_RESULTS = ["https://attacker.example/forged-0.png"]


def test_reapplying_a_forged_callback_fetches_evolinks_answer_instead(su_client, user, evolink):
    """A forged ``completed`` body posted through a leaked callback URL is recorded (the
    receiver answered ``unchanged`` and re-fetched). Re-applying it used to complete the
    task with the attacker's images; it now follows the receiver's trust rule: the task is
    fetched from Evolink and Evolink's answer (still processing) is what is applied."""
    task = make_task(user, status=Status.PROCESSING)
    forged = samples.task_answer(task.evolink_id, status="completed", results=FORGED_RESULTS)
    event = add_event(task, forged, source="callback", outcome="unchanged")
    evolink.add(responses.GET, f"{BASE}/v1/tasks/{task.evolink_id}",
                json=samples.task_answer(task.evolink_id, status="processing", progress=60))
    response = post_action(su_client, EVENTS, "reapply_events", [event])
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == Status.PROCESSING and task.progress == 60
    assert not GeneratedImage.objects.filter(task=task).exists()
    replay = task.events.filter(source=EventSource.ADMIN).get()
    assert replay.payload["status"] == "processing"  # Evolink's answer, not the forged body
    assert f"re-apply of event {event.pk}" in replay.note
    text = " ".join(messages_of(response))
    assert "not trusted" in text and "fetched from Evolink" in text
    assert [c.request.url for c in evolink.calls if "/v1/tasks/" in c.request.url] == [
        f"{BASE}/v1/tasks/{task.evolink_id}"]


def test_a_callback_body_is_reapplied_as_recorded_only_when_callbacks_are_trusted(
        su_client, user, evolink, settings):
    settings.EVOLINK = {**settings.EVOLINK, "TRUST_CALLBACK_BODY": True}
    task = make_task(user, status=Status.PROCESSING)
    body = samples.task_answer(task.evolink_id, status="completed", results=FORGED_RESULTS)
    event = add_event(task, body, source="callback", outcome="error")
    post_action(su_client, EVENTS, "reapply_events", [event])
    task.refresh_from_db()
    assert task.status == Status.COMPLETED
    assert not [c for c in evolink.calls if "/v1/tasks/" in c.request.url]


def test_reapplying_an_admin_copy_is_not_trusted_either(su_client, user, evolink):
    """A re-apply event's payload is a copy of something recorded earlier (perhaps a forged
    callback re-applied before this rule): it is verified with Evolink too."""
    task = make_task(user, status=Status.PROCESSING)
    copy = samples.task_answer(task.evolink_id, status="completed", results=FORGED_RESULTS)
    event = add_event(task, copy, source="admin")
    evolink.add(responses.GET, f"{BASE}/v1/tasks/{task.evolink_id}",
                json=samples.task_answer(task.evolink_id, status="processing", progress=50))
    post_action(su_client, EVENTS, "reapply_events", [event])
    task.refresh_from_db()
    assert task.status == Status.PROCESSING and not task.images.exists()


def test_download_action_stores_the_images(su_client, user, monkeypatch, png_bytes, settings):
    """End to end with the sync django-q2 queue: the worker runs and the files are stored."""
    import io

    fetched = []

    def fake_fetch(url):
        fetched.append(url)
        return io.BytesIO(png_bytes), {"format": "PNG", "extension": "png", "width": 512,
                                       "height": 512, "size": len(png_bytes)}

    monkeypatch.setattr("django_evolink.background.downloads.fetch_image", fake_fetch)
    task = make_task(user, status=Status.COMPLETED, images=2)
    GeneratedImage.objects.filter(task=task, index=1).update(
        download_error="The image link answered HTTP 500.", download_attempts=3,
        next_download_at=timezone.now() + dt.timedelta(hours=1))
    expired = make_task(user, status=Status.COMPLETED, images=1)
    GeneratedImage.objects.filter(task=expired).update(
        source_expires_at=timezone.now() - dt.timedelta(minutes=1))
    response = post_action(su_client, CHANGELIST, "download_missing_images", [task, expired])
    assert response.status_code == 302
    assert len(fetched) == 2
    stored = {i.index: i for i in GeneratedImage.objects.filter(task=task)}
    assert all(i.file and i.width == 512 and not i.download_error for i in stored.values())
    assert any("have expired" in m for m in messages_of(response))
    assert not GeneratedImage.objects.get(task=expired).file


def test_download_action_does_not_retry_past_the_download_retry_window(su_client, user,
                                                                        monkeypatch):
    """Evolink's link still works for 21 h, but DOWNLOAD_RETRY_HOURS (2) has passed: the
    action gives up as the downloads do, instead of clearing the recorded failure."""
    queued = []
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", queued.append)
    task = make_task(user, status=Status.COMPLETED, images=1)
    gave_up = "The download failed (ConnectionError). Gave up: the link expires before another try."
    now = timezone.now()
    GeneratedImage.objects.filter(task=task).update(
        created_at=now - dt.timedelta(hours=3), source_expires_at=now + dt.timedelta(hours=21),
        download_error=gave_up, download_attempts=4)
    with override_settings(EVOLINK={**settings.EVOLINK, "DOWNLOAD_RETRY_HOURS": 2}):
        response = post_action(su_client, CHANGELIST, "download_missing_images", [task])
    assert queued == []
    assert any("have expired" in m for m in messages_of(response))
    assert GeneratedImage.objects.get(task=task).download_error == gave_up


def test_download_action_leaves_the_images_due_when_its_job_is_lost(su_client, user,
                                                                    monkeypatch):
    """The job the action enqueues is lost (a broker without receipts, a dead worker): the
    images are due, as after the downloads' own retry, so the next sweep enqueues them."""
    queued = []
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", queued.append)
    task = make_task(user, status=Status.COMPLETED, images=2)
    GeneratedImage.objects.filter(task=task).update(
        download_error="The image link answered HTTP 404.", download_attempts=1,
        next_download_at=None)
    post_action(su_client, CHANGELIST, "download_missing_images", [task])
    assert queued == [task.pk]
    queued.clear()  # lost
    counts = run_sweep()
    assert queued == [task.pk] and counts["downloads_enqueued"] == 1
    for image in GeneratedImage.objects.filter(task=task):
        assert image.download_error == "" and image.download_attempts == 1


def test_rotate_callback_token_action(su_client, user):
    task = make_task(user, status=Status.PROCESSING, callback_token_hash="a" * 64)
    response = post_action(su_client, CHANGELIST, "rotate_callback_token", [task])
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.callback_token_hash not in ("", "a" * 64) and task.next_poll_at is not None
    assert task.events.filter(source=EventSource.ADMIN, note__contains="token rotated").exists()
    assert any("token rotated" in m for m in messages_of(response))
