"""The admin pages: who sees them, what they show, that the mirror is read-only."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from django_evolink.models import GeneratedImage, ImageTask, Status
from tests.support import evolink_samples as samples
from tests.support.admin import CHANGELIST, EVENTS, IMAGES, USAGE, add_event, change_url, make_task

pytestmark = pytest.mark.django_db


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
