"""The fixtures of django_evolink.pytest_plugin that a site's tests use."""

from __future__ import annotations

import io

import pytest
import requests
from django.conf import settings as django_settings
from django.db import transaction
from PIL import Image


@pytest.mark.django_db
def test_evolink_runs_on_commit_work_and_isolates_media(evolink, tmp_path, settings):
    ran = []
    with transaction.atomic():
        transaction.on_commit(lambda: ran.append("after commit"))
        assert ran == []  # still inside the transaction
    assert ran == ["after commit"]  # the plain django_db fixture would never run it
    assert str(tmp_path / "evolink-media") == django_settings.MEDIA_ROOT
    assert (tmp_path / "evolink-media").is_dir()
    assert settings.Q_CLUSTER["sync"] is True
    assert settings.EVOLINK["CALLBACK_BASE_URL"] is None
    assert settings.EVOLINK["BASE_URL"] == evolink.url


def test_image_url_is_a_png_the_emulator_serves(evolink_emulator, image_url):
    assert image_url.startswith(evolink_emulator.url + "/")
    session = requests.Session()
    session.trust_env = False
    answer = session.get(image_url, timeout=10)
    assert answer.status_code == 200
    assert Image.open(io.BytesIO(answer.content)).size == (512, 512)
