"""Fuzzing the REST API: inputs the database cannot store are refused with a 400."""

from __future__ import annotations

import pytest

from django_evolink.models import ImageTask
from tests.support.api import LIST_URL, PUBLIC_IMAGE, create_calls, image_bytes, upload

pytest_plugins = ["tests.support.api_fixtures"]
# the create throttle counts per user id in the cache, and SQLite reuses ids: start clean
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "a\x00b", "image_urls": [PUBLIC_IMAGE]}, "prompt"),
        ({"prompt": "ab", "image_urls": [PUBLIC_IMAGE + "\x00"]}, "image_urls"),
        ({"prompt": "ab", "image_urls": [PUBLIC_IMAGE + "\n"]}, "image_urls"),
        ({"prompt": "ab", "image_urls": ["https://93.184.215.14/a b.png"]}, "image_urls"),
    ],
    ids=["NUL in prompt", "NUL in URL", "newline in URL", "space in URL"],
)
def test_nul_and_control_characters_are_refused_with_400(api, evolink_http, body, field):
    """PostgreSQL text and jsonb cannot hold NUL: this used to answer 500 on PostgreSQL."""
    response = api.post(LIST_URL, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not ImageTask.objects.exists() and not create_calls(evolink_http)


def test_a_nul_in_an_uploaded_prompt_is_refused_with_400(api, evolink_http):
    response = api.post(LIST_URL, {"prompt": "x\x00y", "images": [upload("a.png", image_bytes())]},
                        format="multipart")
    assert response.status_code == 400 and "prompt" in response.json()
    assert not ImageTask.objects.exists()


# --------------------------------------------------------------- schemathesis (OpenAPI)

schemathesis = pytest.importorskip("schemathesis")  # in the dev extra; see pyproject.toml
from pathlib import Path  # noqa: E402

import responses  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.signals import request_finished, request_started  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from django_evolink.evolink import addresses  # noqa: E402
from tests.support.api import CREATE_URL, UPLOAD_URL  # noqa: E402
from tests.support.evolink_samples import task_answer, upload_answer  # noqa: E402

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
schema = schemathesis.openapi.from_path(str(SCHEMA_PATH))
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]


@pytest.fixture
def fuzz_env(settings, monkeypatch, django_user_model):
    """A basic-auth user with a task of its own; Evolink answers every call (responses)."""
    import base64

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALLOWED_HOSTS = ["*"]
    settings.EVOLINK = {**settings.EVOLINK, "THROTTLE_CLASSES": []}
    owner = django_user_model.objects.create_user("fuzz", password="pw-fuzz")
    ImageTask.objects.create(user=owner, model="wan2.5-image-to-image", prompt="p",
                             image_urls=[PUBLIC_IMAGE], status="processing",
                             evolink_id="task-unified-1-fuzz")
    # no DNS lookups for generated host names: they count as public, unresolvable
    monkeypatch.setattr(addresses.socket, "getaddrinfo",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("no DNS in tests")))
    token = base64.b64encode(b"fuzz:pw-fuzz").decode()
    # as django.test.Client does: the WSGI handler must not close the test's connection
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield from _evolink_answers(token)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _evolink_answers(token: str):
    import json
    import re
    import uuid

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, CREATE_URL, callback=lambda request: (
            200, {}, json.dumps(task_answer(id=f"task-unified-1-{uuid.uuid4().hex}",
                                            status="pending"))))
        rsps.add(responses.POST, UPLOAD_URL, json=upload_answer())
        rsps.add(responses.GET, re.compile(r"https://api\.evolink\.test/v1/tasks/.*"),
                 json=task_answer(id="task-unified-1-fuzz", status="processing", progress=5))
        yield {"Authorization": f"Basic {token}"}


@pytest.mark.slow
@schema.parametrize()
@hypothesis_settings(max_examples=100, deadline=None,
                     suppress_health_check=list(HealthCheck))
def test_the_api_conforms_to_its_schema_and_never_answers_5xx(case, fuzz_env, db):
    """Authenticated schemathesis run (positive and negative data) through WSGI: no 5xx,
    documented status codes and content types, bodies valid against docs/openapi.yaml."""
    case.call_and_validate(app=WSGIHandler(), headers=fuzz_env, checks=CHECKS)
