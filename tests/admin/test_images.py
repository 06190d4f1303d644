"""The result images' admin: whether Evolink's link is still usable follows the downloads."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.contrib import admin
from django.test import override_settings
from django.utils import timezone

from django_evolink.admin import GeneratedImageAdmin
from django_evolink.models import GeneratedImage, Status
from tests.support.admin import IMAGES, make_task

pytestmark = pytest.mark.django_db


def _image(user, *, age: dt.timedelta, expires_in: dt.timedelta | None) -> GeneratedImage:
    task = make_task(user, status=Status.COMPLETED, images=1)
    now = timezone.now()
    GeneratedImage.objects.filter(task=task).update(
        created_at=now - age, source_expires_at=None if expires_in is None else now + expires_in)
    return GeneratedImage.objects.get(task=task)


def _link_state(image: GeneratedImage) -> str:
    return GeneratedImageAdmin(GeneratedImage, admin.site).link_state(image)


def test_link_is_expired_past_the_download_retry_window(user):
    """Evolink's link still works for 21 h, but downloads stop after DOWNLOAD_RETRY_HOURS."""
    old = _image(user, age=dt.timedelta(hours=3), expires_in=dt.timedelta(hours=21))
    fresh = _image(user, age=dt.timedelta(minutes=5), expires_in=dt.timedelta(hours=23))
    assert _link_state(old) == _link_state(fresh) == "alive"  # default: 23 hours
    with override_settings(EVOLINK={**settings.EVOLINK, "DOWNLOAD_RETRY_HOURS": 2}):
        assert _link_state(old) == "expired"
        assert _link_state(fresh) == "alive"


def test_link_without_a_recorded_expiry_expires_with_the_retry_window(user):
    stale = _image(user, age=dt.timedelta(hours=30), expires_in=None)
    recent = _image(user, age=dt.timedelta(hours=1), expires_in=None)
    assert _link_state(stale) == "expired"
    assert _link_state(recent) == "expiry unknown"


def test_image_list_shows_no_thumbnail_of_a_link_past_the_window(su_client, user):
    image = _image(user, age=dt.timedelta(hours=3), expires_in=dt.timedelta(hours=21))
    assert image.source_url in su_client.get(IMAGES).content.decode()
    with override_settings(EVOLINK={**settings.EVOLINK, "DOWNLOAD_RETRY_HOURS": 2}):
        assert image.source_url not in su_client.get(IMAGES).content.decode()
