"""The admin: pages, permissions, filters, search, actions, Evolink being down."""
# ruff: noqa: F811 - pytest fixtures imported from tests.support.admin

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import requests
import responses
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.utils import timezone

from django_evolink.admin import EstimatedCountPaginator, redact_data
from django_evolink.models import EventSource, GeneratedImage, ImageTask, Status, TaskEvent
from tests.support import evolink_samples as samples
from tests.support.admin import (  # noqa: F401 - fixtures
    API_KEY,
    BASE,
    CHANGELIST,
    EVENTS,
    IMAGES,
    USAGE,
    _fast_password_hasher,
    add_event,
    admin_user,
    change_url,
    evolink,
    make_task,
    su_client,
)

pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _post_action(client, url, action, objs):
    return client.post(url, {"action": action, "_selected_action": [str(o.pk) for o in objs],
                             "index": "0"})


def _ids(response) -> set:
    return {obj.pk for obj in response.context["cl"].result_list}


# ----------------------------------------------------------------------- pages


def test_every_page_renders_for_a_superuser(su_client, user):
    task = make_task(user, status=Status.COMPLETED, images=2, stored=True)
    failed = make_task(user, status=Status.FAILED, error_code="upstream_error",
                       error_message="The provider failed")
    event = add_event(task, samples.task_answer(task.evolink_id, status="completed"))
    image = task.images.first()
    for url in (
        CHANGELIST,
        change_url(task),
        change_url(failed),
        EVENTS,
        f"{EVENTS}{event.pk}/change/",
        IMAGES,
        f"{IMAGES}{image.pk}/change/",
        USAGE,
        "/admin/",
    ):
        response = su_client.get(url)
        assert response.status_code == 200, url
    page = su_client.get(change_url(failed)).content.decode()
    assert "upstream_error" in page and "The provider failed" in page
    # the mirror is read-only: no save button, no add link
    page = su_client.get(change_url(task)).content.decode()
    assert 'name="_save"' not in page
    assert "imagetask/add/" not in su_client.get(CHANGELIST).content.decode()
    assert su_client.get(f"{CHANGELIST}add/").status_code == 403


def test_change_page_shows_images_events_and_buttons(su_client, user):
    task = make_task(user, status=Status.COMPLETED, images=1, stored=True)
    GeneratedImage.objects.create(task=task, index=1, source_url="https://files.evolink.ai/x/1.png",
                                  source_expires_at=timezone.now() - dt.timedelta(hours=1))
    add_event(task, samples.task_answer(task.evolink_id, status="completed"),
              status_before="processing", status_after="completed", changed=True,
              outcome="applied")
    page = su_client.get(change_url(task)).content.decode()
    assert f"/media/evolink/results/{task.pk}/0.png" in page  # stored file link
    assert "https://files.evolink.ai/x/1.png" in page and "expired" in page
    assert "&quot;status&quot;: &quot;completed&quot;" in page  # pretty JSON
    for label in ("Refresh from Evolink", "Download missing images", "Resubmit as a new task"):
        assert label in page
    assert "evolink-action/refresh_from_evolink/" in page


def test_anonymous_is_sent_to_login_and_non_staff_refused(client, user, evolink):
    task = make_task(user)
    urls = (CHANGELIST, change_url(task), EVENTS, IMAGES, USAGE)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    client.force_login(user)  # logged in but not staff
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url


def test_staff_without_permissions_is_refused(client, django_user_model, evolink):
    staff = django_user_model.objects.create_user("clerk", "c@example.com", "pw", is_staff=True)
    task = make_task(staff)
    client.force_login(staff)
    for url in (CHANGELIST, change_url(task), EVENTS, USAGE):
        assert client.get(url).status_code == 403, url


def test_view_only_staff_sees_pages_but_no_actions_and_cannot_delete(
    client, django_user_model, evolink
):
    staff = django_user_model.objects.create_user("viewer", "v@example.com", "pw", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_imagetask", "view_taskevent",
                                                 "delete_imagetask"])
    )
    task = make_task(staff)
    client.force_login(staff)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert response.context["action_form"] is None or not [
        c for c, _ in response.context["action_form"].fields["action"].choices if c
    ]
    assert client.get(USAGE).status_code == 200
    # deleting is for superusers only, even with the delete permission
    assert client.get(f"{CHANGELIST}{task.pk}/delete/").status_code == 403
    response = client.post(f"{CHANGELIST}{task.pk}/evolink-action/refresh_from_evolink/")
    assert response.status_code == 403


def test_superuser_may_delete(su_client, user):
    task = make_task(user)
    response = su_client.post(f"{CHANGELIST}{task.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ImageTask.objects.filter(pk=task.pk).exists()


# ------------------------------------------------------------- filters, search


def test_filters(su_client, user, other_user):
    done = make_task(user, status=Status.COMPLETED)
    running = make_task(other_user, status=Status.PROCESSING)
    old = make_task(user, status=Status.FAILED, created=timezone.now() - dt.timedelta(days=40))
    orphan = make_task(None, status=Status.QUEUED, evolink_id=None)
    assert _ids(su_client.get(CHANGELIST)) == {done.pk, running.pk, old.pk, orphan.pk}
    assert _ids(su_client.get(CHANGELIST, {"status__exact": "completed"})) == {done.pk}
    assert _ids(su_client.get(CHANGELIST, {"user__id__exact": other_user.pk})) == {running.pk}
    assert _ids(su_client.get(CHANGELIST, {"user__isnull": "True"})) == {orphan.pk}
    assert _ids(su_client.get(CHANGELIST, {"model": "wan2.5-image-to-image"})) == {
        done.pk, running.pk, old.pk, orphan.pk}
    assert _ids(su_client.get(CHANGELIST, {"model": "other-model"})) == set()
    since = (timezone.now() - dt.timedelta(days=7)).isoformat()
    assert old.pk not in _ids(su_client.get(CHANGELIST, {"created_at__gte": since}))
    year = timezone.localtime(old.created_at).year
    month = timezone.localtime(old.created_at).month
    in_month = _ids(su_client.get(CHANGELIST, {"created_at__year": year,
                                               "created_at__month": month}))
    assert old.pk in in_month
    # the user filter offers users who have tasks
    page = su_client.get(CHANGELIST).content.decode()
    assert f"user__id__exact={other_user.pk}" in page


def test_search(su_client, user, other_user):
    fox = make_task(user, prompt="a red fox in the snow")
    owl = make_task(other_user, prompt="an owl at night", evolink_id="task-unified-owl-42")
    assert _ids(su_client.get(CHANGELIST, {"q": "fox"})) == {fox.pk}
    assert _ids(su_client.get(CHANGELIST, {"q": "task-unified-owl-42"})) == {owl.pk}
    assert _ids(su_client.get(CHANGELIST, {"q": "bob"})) == {owl.pk}
    assert _ids(su_client.get(CHANGELIST, {"q": "alice@example.com"})) == {fox.pk}
    assert _ids(su_client.get(CHANGELIST, {"q": str(owl.pk)})) == {owl.pk}
    assert _ids(su_client.get(CHANGELIST, {"q": "nothing-matches"})) == set()
    ev = add_event(owl, {"id": owl.evolink_id}, note="hello")
    add_event(fox, {"id": fox.evolink_id})
    response = su_client.get(EVENTS, {"q": "task-unified-owl-42"})
    assert _ids(response) == {ev.pk}
    assert _ids(su_client.get(EVENTS, {"q": str(owl.pk)})) == {ev.pk}


# --------------------------------------------------------------------- actions


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
    response = _post_action(su_client, CHANGELIST, "refresh_from_evolink", [task, never])
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == Status.COMPLETED and task.images.count() == 1
    event = task.events.get()
    assert event.source == EventSource.ADMIN and event.changed
    assert LogEntry.objects.filter(object_id=str(task.pk)).exists()
    text = " ".join(_messages(response))
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
    response = _post_action(su_client, CHANGELIST, "refresh_from_evolink", [task])
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == Status.PROCESSING
    assert any("could not be asked" in m for m in _messages(response))


def test_refresh_of_a_task_evolink_forgot_marks_it_failed(su_client, evolink, user):
    task = make_task(user, status=Status.PROCESSING)
    evolink.add(responses.GET, f"{BASE}/v1/tasks/{task.evolink_id}", status=404,
                json=samples.error_answer(404))
    _post_action(su_client, CHANGELIST, "refresh_from_evolink", [task])
    task.refresh_from_db()
    assert task.status == Status.FAILED and task.error_code == "not_found_error"
    assert task.events.get().source == EventSource.ADMIN


def test_download_action_queues_missing_images(su_client, user, monkeypatch):
    queued = []
    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", queued.append)
    missing = make_task(user, status=Status.COMPLETED, images=2)
    stored = make_task(user, status=Status.COMPLETED, images=1, stored=True)
    running = make_task(user, status=Status.PROCESSING)
    response = _post_action(su_client, CHANGELIST, "download_missing_images",
                            [missing, stored, running])
    assert response.status_code == 302
    assert queued == [missing.pk]
    text = " ".join(_messages(response))
    assert "download of 2 missing images queued" in text
    assert "already stored" in text and "not completed" in text


def test_download_action_reports_a_queue_failure(su_client, user, monkeypatch):
    def broken(task_id):
        raise ConnectionError("broker down")

    monkeypatch.setattr("django_evolink.background.queue.enqueue_downloads", broken)
    task = make_task(user, status=Status.COMPLETED, images=1)
    response = _post_action(su_client, CHANGELIST, "download_missing_images", [task])
    assert response.status_code == 302
    assert any("could not be queued" in m for m in _messages(response))


def test_resubmit_action_creates_a_new_task(su_client, evolink, user):
    old = make_task(user, status=Status.FAILED, prompt="resubmit me", error_code="x")
    evolink.add(responses.POST, f"{BASE}/v1/images/generations",
                json=samples.task_answer("task-unified-new-1", status="pending"))
    response = _post_action(su_client, CHANGELIST, "resubmit_as_new_task", [old])
    assert response.status_code == 302
    new = ImageTask.objects.exclude(pk=old.pk).get()
    assert (new.prompt, new.image_urls, new.n, new.model, new.user) == (
        old.prompt, old.image_urls, old.n, old.model, user)
    assert new.evolink_id == "task-unified-new-1" and new.status == Status.PENDING
    assert any(str(new.pk)[:8] in m and "resubmitted" in m for m in _messages(response))


def test_resubmit_refused_by_evolink_is_reported(su_client, evolink, user):
    old = make_task(user, status=Status.FAILED)
    evolink.add(responses.POST, f"{BASE}/v1/images/generations", status=402,
                json=samples.error_answer(402))
    response = _post_action(su_client, CHANGELIST, "resubmit_as_new_task", [old])
    assert response.status_code == 302
    new = ImageTask.objects.exclude(pk=old.pk).get()
    assert new.status == Status.FAILED and new.error_code == "insufficient_quota_error"
    assert any("refused by Evolink" in m for m in _messages(response))


def test_resubmit_of_an_invalid_request_sends_nothing(su_client, evolink, user):
    old = make_task(user, status=Status.FAILED, image_urls=[])
    ImageTask.objects.filter(pk=old.pk).update(image_urls=[])
    response = _post_action(su_client, CHANGELIST, "resubmit_as_new_task", [old])
    assert ImageTask.objects.count() == 1
    assert any("no longer valid" in m for m in _messages(response))


def test_actions_refuse_too_many_rows(su_client, evolink, user, monkeypatch):
    from django_evolink.admin import ImageTaskAdmin

    monkeypatch.setattr(ImageTaskAdmin, "max_action_rows", 2)
    tasks = [make_task(user) for _ in range(3)]
    response = _post_action(su_client, CHANGELIST, "refresh_from_evolink", tasks)
    assert any("at most 2" in m for m in _messages(response))
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
    task = make_task(user, status=Status.PROCESSING)
    answer = samples.task_answer(task.evolink_id, status="completed")
    event = add_event(task, answer, source="callback", outcome="error")
    empty = add_event(task, None, source="system")
    response = _post_action(su_client, EVENTS, "reapply_events", [event, empty])
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == Status.COMPLETED
    replay = task.events.filter(source=EventSource.ADMIN).get()
    assert replay.note == f"re-applied event {event.pk}" and replay.changed
    assert replay.payload == answer
    text = " ".join(_messages(response))
    assert "processing → completed" in text and "no recorded payload" in text
    # re-applying again changes nothing and says so
    response = _post_action(su_client, EVENTS, "reapply_events", [event])
    assert any("Nothing new" in m for m in _messages(response))


# -------------------------------------------------- balance, Evolink down, API key


def test_changelist_shows_balance_and_filtered_credits(su_client, evolink, user, other_user):
    make_task(user, credits="1.2")
    make_task(user, credits="2.5", status=Status.COMPLETED)
    make_task(other_user, credits="10")
    response = su_client.get(CHANGELIST)
    page = response.content.decode()
    assert "1095.39" in page  # remaining credits
    assert response.context["evolink_filtered_credits"] == "13.7"
    response = su_client.get(CHANGELIST, {"user__id__exact": user.pk})
    assert response.context["evolink_filtered_credits"] == "3.7"
    response = su_client.get(CHANGELIST, {"status__exact": "failed"})
    assert response.context["evolink_filtered_credits"] == "0"
    # the balance is cached: one request to Evolink for three pages
    assert sum(1 for c in evolink.calls if c.request.url.endswith("/v1/credits")) == 1


@pytest.mark.parametrize("failure", ["connection", "503", "401", "garbage"])
def test_changelist_renders_when_evolink_is_down(su_client, evolink, user, failure):
    make_task(user)
    evolink.remove(responses.GET, f"{BASE}/v1/credits")
    url = f"{BASE}/v1/credits"
    if failure == "connection":
        evolink.add(responses.GET, url, body=requests.exceptions.ConnectionError("refused"))
    elif failure == "garbage":
        evolink.add(responses.GET, url, body="<html>oops</html>", status=200)
    else:
        evolink.add(responses.GET, url, status=int(failure), json=samples.error_answer(
            int(failure), message=f"bad key {API_KEY}"))
    response = su_client.get(CHANGELIST)
    assert response.status_code == 200
    page = response.content.decode()
    assert "unavailable" in page and "Evolink could not be reached" in page
    assert API_KEY not in page
    # asked once, not once per retry: the admin does not wait on retries
    assert sum(1 for c in evolink.calls if c.request.url.endswith("/v1/credits")) == 1


def test_changelist_renders_without_an_api_key(su_client, settings, user):
    settings.EVOLINK = {**settings.EVOLINK, "API_KEY": None}
    make_task(user)
    response = su_client.get(CHANGELIST)
    assert response.status_code == 200
    assert "unavailable" in response.content.decode()


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
        response = _post_action(su_client, CHANGELIST, action, [task])
        for message in _messages(response):
            assert API_KEY not in message, action
        follow = su_client.get(CHANGELIST)
        assert API_KEY not in follow.content.decode()
    response = _post_action(su_client, EVENTS, "reapply_events", [event])
    assert all(API_KEY not in m for m in _messages(response))
    assert API_KEY not in su_client.get(change_url(task)).content.decode()


def test_redact_data_by_key_and_value():
    data = {"Authorization": "Bearer x", "nested": [{"token": "t", "ok": f"a {API_KEY}"}],
            "empty_token": "", "n": 3}
    assert redact_data(data) == {"Authorization": "[redacted]",
                                 "nested": [{"token": "[redacted]", "ok": "a sk-evo-[redacted]"}],
                                 "empty_token": "", "n": 3}


# --------------------------------------------------------------- paginator


def test_paginator_caps_the_count(user):
    for _ in range(7):
        make_task(user)
    paginator = EstimatedCountPaginator(ImageTask.objects.all(), 3, count_limit=5)
    assert paginator.count == 6 and not paginator.count_is_exact
    assert paginator.num_pages == 2
    assert len(paginator.page(3).object_list) == 1  # past the capped end, still served
    assert len(paginator.page(9).object_list) == 0
    exact = EstimatedCountPaginator(ImageTask.objects.all(), 3, count_limit=50)
    assert exact.count == 7 and exact.count_is_exact


def test_changelist_says_when_the_count_is_capped(su_client, user, monkeypatch):
    from django_evolink.admin import ImageTaskAdmin

    monkeypatch.setattr(ImageTaskAdmin, "exact_count_limit", 3)
    for _ in range(5):
        make_task(user)
    page = su_client.get(CHANGELIST).content.decode()
    assert "more than 3 image tasks" in page
    monkeypatch.setattr(ImageTaskAdmin, "exact_count_limit", 100)
    page = su_client.get(CHANGELIST).content.decode()
    assert "5 image tasks" in page


@pytest.mark.postgres
def test_postgres_unfiltered_count_is_the_planner_estimate(su_client, user, monkeypatch):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pg_class.reltuples is PostgreSQL-only")
    for _ in range(4):
        make_task(user)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ImageTask._meta.db_table}")
    paginator = EstimatedCountPaginator(ImageTask.objects.all(), 2, count_limit=3)
    assert paginator.count == 4 and paginator.count_is_estimate
    filtered = EstimatedCountPaginator(ImageTask.objects.filter(status="processing"), 2,
                                       count_limit=3)
    assert filtered.count == 4 and not filtered.count_is_estimate
    assert not filtered.count_is_exact


# --------------------------------------------------------------- usage view


def test_usage_view_numbers_and_csv(su_client, user, other_user, settings):
    day1 = timezone.make_aware(dt.datetime(2025, 3, 1, 10, 0))
    day3 = timezone.make_aware(dt.datetime(2025, 3, 3, 23, 30))
    make_task(user, credits="1.2", status=Status.COMPLETED, created=day1)
    make_task(user, credits="1.2", status=Status.FAILED, created=day1)
    make_task(other_user, credits="3", status=Status.COMPLETED, created=day3)
    make_task(None, credits=None, status=Status.QUEUED, evolink_id=None, created=day3)
    make_task(user, credits="50", created=day3 + dt.timedelta(days=1))  # outside
    response = su_client.get(USAGE, {"start": "2025-03-01", "end": "2025-03-03"})
    assert response.status_code == 200
    ctx = response.context
    assert ctx["totals"]["tasks"] == 4
    assert ctx["totals"]["completed"] == 2 and ctx["totals"]["failed"] == 1
    assert ctx["totals"]["credits"] == Decimal("5.4")
    days = {d["day"].isoformat(): (d["tasks"], d["credits_text"]) for d in ctx["days"]}
    assert days == {"2025-03-01": (2, "2.4"), "2025-03-02": (0, "0"), "2025-03-03": (2, "3")}
    users = [(u["username"], u["tasks"], u["credits_text"]) for u in ctx["users"]]
    assert users == [("bob", 1, "3"), ("alice", 2, "2.4"), ("", 1, "0")]
    page = response.content.decode()
    assert "<svg" in page and "<rect" in page and "2025-03-03: 2 tasks, 3 credits" in page

    csv_day = su_client.get(USAGE, {"start": "2025-03-01", "end": "2025-03-03",
                                    "export": "day"})
    assert csv_day["Content-Type"].startswith("text/csv")
    assert "attachment" in csv_day["Content-Disposition"]
    assert csv_day.content.decode().splitlines() == [
        "day,tasks,completed,failed,credits_reserved",
        "2025-03-01,2,1,1,2.4",
        "2025-03-02,0,0,0,0",
        "2025-03-03,2,1,0,3",
    ]
    csv_user = su_client.get(USAGE, {"start": "2025-03-01", "end": "2025-03-03",
                                     "export": "user"}).content.decode().splitlines()
    assert csv_user == [
        "user_id,username,email,tasks,completed,failed,credits_reserved",
        f"{other_user.pk},bob,bob@example.com,1,1,0,3",
        f"{user.pk},alice,alice@example.com,2,1,1,2.4",
        ",,,1,0,0,0",
    ]


def test_usage_days_follow_the_site_time_zone(su_client, user, settings):
    settings.TIME_ZONE = "Asia/Tokyo"
    # 2025-03-01 20:00 UTC is 2025-03-02 05:00 in Tokyo
    make_task(user, created=dt.datetime(2025, 3, 1, 20, 0, tzinfo=dt.timezone.utc))
    response = su_client.get(USAGE, {"start": "2025-03-01", "end": "2025-03-02"})
    days = {d["day"].isoformat(): d["tasks"] for d in response.context["days"]}
    assert days == {"2025-03-01": 0, "2025-03-02": 1}


def test_usage_view_refuses_bad_periods(su_client):
    response = su_client.get(USAGE, {"start": "2025-03-05", "end": "2025-03-01"})
    assert response.status_code == 200
    assert "start date must be on or before" in response.content.decode()
    response = su_client.get(USAGE, {"start": "2020-01-01", "end": "2025-01-01"})
    assert "at most 366 days" in response.content.decode()
    response = su_client.get(USAGE, {"start": "not-a-date"})
    assert "Enter a valid date" in response.content.decode()
    response = su_client.get(USAGE, {"export": "pdf"})
    assert "Unknown export" in response.content.decode()


def test_usage_csv_neutralises_formulas(su_client, django_user_model):
    evil = django_user_model.objects.create_user("=cmd|x", "e@example.com", "pw")
    make_task(evil)
    body = su_client.get(USAGE, {"export": "user"}).content.decode()
    assert "'=cmd|x" in body


def test_usage_default_period_is_the_last_30_days(su_client, user):
    make_task(user)
    make_task(user, created=timezone.now() - dt.timedelta(days=45))
    response = su_client.get(USAGE)
    assert len(response.context["days"]) == 30
    assert response.context["totals"]["tasks"] == 1


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
    response = _post_action(su_client, CHANGELIST, "download_missing_images", [task, expired])
    assert response.status_code == 302
    assert len(fetched) == 2
    stored = {i.index: i for i in GeneratedImage.objects.filter(task=task)}
    assert all(i.file and i.width == 512 and not i.download_error for i in stored.values())
    assert any("have expired" in m for m in _messages(response))
    assert not GeneratedImage.objects.get(task=expired).file
