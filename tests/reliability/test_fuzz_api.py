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
import json  # noqa: E402
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
    # a stream of the fuzz task ends at once (it would otherwise stay open 300 s)
    settings.EVOLINK = {**settings.EVOLINK, "THROTTLE_CLASSES": [], "EVENTS_MAX_SECONDS": 0.2}
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
    # A generated Host header (negative data may name one) is the web server's business:
    # Django refuses an empty or invalid one with its own 400 before any view runs.
    case.headers.pop("Host", None)
    case.call_and_validate(app=WSGIHandler(), headers=fuzz_env, checks=CHECKS)


# ------------------------------------- hostile JSON values (what schemathesis does not make)

from django.test import Client  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: Text with what JSON can carry and databases refuse: lone surrogates, NUL, controls.
HOSTILE_TEXT = st.text(alphabet=st.one_of(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.sampled_from(["\x00", "\x01", "\n", "\u2028", "\ufeff", "\U0001f600", "a", " "]),
    st.characters(codec="utf-8"),
), max_size=40)
HUGE_NUMBERS = st.one_of(
    st.integers(min_value=-(10**4000), max_value=10**4000),
    st.sampled_from([1e308, -1e308, 5e-324, 2**63, -(2**63) - 1, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
)
SCALARS = st.one_of(st.none(), st.booleans(), HUGE_NUMBERS, HOSTILE_TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(HOSTILE_TEXT, inner, max_size=4)),
    max_leaves=12)


def as_json(value, depth: int) -> bytes:
    """``value`` as JSON text (surrogates escaped, so the bytes are ASCII) wrapped in
    ``depth`` arrays; big integers as Python writes them (up to 4,000 digits)."""
    text = json.dumps(value, ensure_ascii=True)
    return ("[" * depth + text + "]" * depth).encode("ascii")


@pytest.mark.slow
@given(field=st.sampled_from(["prompt", "image_urls", "n", "model", "extra", None]),
       value=VALUES, depth=st.sampled_from([0, 0, 1, 50, 1_000, 50_000]),
       endpoint=st.sampled_from(["create", "refresh", "list"]))
@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_hostile_json_values_never_answer_5xx(fuzz_env, db, field, value, depth, endpoint):
    """Lone surrogates, NUL, deep nesting and huge numbers in any field (or as the whole
    body) of every POST endpoint: never a 5xx, never a task that could not be stored."""
    if field is None:
        body = as_json(value, depth)
    else:
        body = ("{" + json.dumps(field) + ": " + as_json(value, depth).decode("ascii")
                + ', "image_urls": ["' + PUBLIC_IMAGE + '"], "prompt": "p"}').encode("ascii")
        if field in ("image_urls", "prompt"):  # the hostile value must win: send it last
            body = ('{"image_urls": ["' + PUBLIC_IMAGE + '"], "prompt": "p", '
                    + json.dumps(field) + ": " + as_json(value, depth).decode("ascii")
                    + "}").encode("ascii")
    task = ImageTask.objects.get(evolink_id="task-unified-1-fuzz")
    url = {"create": LIST_URL, "list": LIST_URL,
           "refresh": f"/evolink/tasks/{task.pk}/refresh/"}[endpoint]
    client = Client(HTTP_AUTHORIZATION=fuzz_env["Authorization"])
    method = client.get if endpoint == "list" else client.post
    response = method(url, body, content_type="application/json") if endpoint != "list" \
        else client.generic("GET", url, body, content_type="application/json")
    assert response.status_code < 500, (response.status_code, response.content[:300])
    for stored in ImageTask.objects.values_list("prompt", flat=True):
        stored.encode("utf-8")  # whatever was kept is valid text
