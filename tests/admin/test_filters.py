"""The changelists' filters and search."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from django_evolink.models import Status
from tests.support.admin import CHANGELIST, EVENTS, add_event, make_task, result_ids

pytestmark = pytest.mark.django_db


def test_filters(su_client, user, other_user):
    done = make_task(user, status=Status.COMPLETED)
    running = make_task(other_user, status=Status.PROCESSING)
    old = make_task(user, status=Status.FAILED, created=timezone.now() - dt.timedelta(days=40))
    orphan = make_task(None, status=Status.QUEUED, evolink_id=None)
    assert result_ids(su_client.get(CHANGELIST)) == {done.pk, running.pk, old.pk, orphan.pk}
    assert result_ids(su_client.get(CHANGELIST, {"status__exact": "completed"})) == {done.pk}
    assert result_ids(su_client.get(CHANGELIST, {"user__id__exact": other_user.pk})) == {running.pk}
    assert result_ids(su_client.get(CHANGELIST, {"user__isnull": "True"})) == {orphan.pk}
    assert result_ids(su_client.get(CHANGELIST, {"model": "wan2.5-image-to-image"})) == {
        done.pk, running.pk, old.pk, orphan.pk}
    assert result_ids(su_client.get(CHANGELIST, {"model": "other-model"})) == set()
    since = (timezone.now() - dt.timedelta(days=7)).isoformat()
    assert old.pk not in result_ids(su_client.get(CHANGELIST, {"created_at__gte": since}))
    year = timezone.localtime(old.created_at).year
    month = timezone.localtime(old.created_at).month
    in_month = result_ids(su_client.get(CHANGELIST, {"created_at__year": year,
                                               "created_at__month": month}))
    assert old.pk in in_month
    # the user filter offers users who have tasks
    page = su_client.get(CHANGELIST).content.decode()
    assert f"user__id__exact={other_user.pk}" in page


def test_search(su_client, user, other_user):
    fox = make_task(user, prompt="a red fox in the snow")
    owl = make_task(other_user, prompt="an owl at night", evolink_id="task-unified-owl-42")
    assert result_ids(su_client.get(CHANGELIST, {"q": "fox"})) == {fox.pk}
    assert result_ids(su_client.get(CHANGELIST, {"q": "task-unified-owl-42"})) == {owl.pk}
    assert result_ids(su_client.get(CHANGELIST, {"q": "bob"})) == {owl.pk}
    assert result_ids(su_client.get(CHANGELIST, {"q": "alice@example.com"})) == {fox.pk}
    assert result_ids(su_client.get(CHANGELIST, {"q": str(owl.pk)})) == {owl.pk}
    assert result_ids(su_client.get(CHANGELIST, {"q": "nothing-matches"})) == set()
    ev = add_event(owl, {"id": owl.evolink_id}, note="hello")
    add_event(fox, {"id": fox.evolink_id})
    response = su_client.get(EVENTS, {"q": "task-unified-owl-42"})
    assert result_ids(response) == {ev.pk}
    assert result_ids(su_client.get(EVENTS, {"q": str(owl.pk)})) == {ev.pk}


def test_error_filter_offers_evolinks_task_codes(su_client, user):
    policy = make_task(user, status=Status.FAILED, error_code="content_policy_violation",
                       error_message="refused")
    lost = make_task(user, status=Status.FAILED, error_code="outcome_unknown")
    make_task(user, status=Status.COMPLETED)
    page = su_client.get(CHANGELIST).content.decode()
    for code in ("content_policy_violation", "image_processing_error", "generation_timeout",
                 "quota_exceeded", "service_error", "generation_failed_no_content",
                 "outcome_unknown"):
        assert f"error_code={code}" in page, code
    assert result_ids(su_client.get(CHANGELIST, {"error_code": "content_policy_violation"})) == {
        policy.pk}
    assert result_ids(su_client.get(CHANGELIST, {"error_code": "outcome_unknown"})) == {lost.pk}
    # a code outside the list (a local one, a future Evolink one) still filters
    odd = make_task(user, status=Status.FAILED, error_code="some_new_code")
    assert result_ids(su_client.get(CHANGELIST, {"error_code": "some_new_code"})) == {odd.pk}


def test_change_page_shows_what_to_change_for_a_user_fixable_code(su_client, user):
    from django.urls import reverse

    task = make_task(user, status=Status.FAILED, error_code="image_processing_error",
                     error_message="image_urls[0]: HTTP 404")
    page = su_client.get(reverse("admin:django_evolink_imagetask_change", args=[task.pk]))
    assert "publicly reachable" in page.content.decode()


def test_the_user_filter_offers_at_most_max_choices_users_who_have_tasks(
        su_client, django_user_model, monkeypatch):
    from django_evolink.admin.filters import TaskUserFilter

    with_tasks = [django_user_model.objects.create_user(f"maker{i}") for i in range(4)]
    idle = django_user_model.objects.create_user("idle")
    for owner in with_tasks:
        make_task(owner)
    make_task(None)
    page = su_client.get(CHANGELIST).content.decode()
    assert all(f"user__id__exact={u.pk}\"" in page for u in with_tasks)
    assert f"user__id__exact={idle.pk}\"" not in page
    monkeypatch.setattr(TaskUserFilter, "max_choices", 2)
    page = su_client.get(CHANGELIST).content.decode()
    assert sum(f"user__id__exact={u.pk}\"" in page for u in with_tasks) == 2
