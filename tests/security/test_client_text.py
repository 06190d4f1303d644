"""Client text no database can store, and bodies no parser can take: 400, never 500.

Lone surrogates (U+D800..U+DFFF) are not valid Unicode: SQLite's driver raised
``UnicodeEncodeError`` and PostgreSQL's jsonb ``DataError`` (a 500) when one reached a
create. Deeply nested JSON made the JSON parser raise ``RecursionError`` (a 500). Every
entry point that stores client text now refuses it with a message saying why.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from django_evolink import services
from django_evolink.exceptions import EvolinkValidationError
from django_evolink.models import ImageTask
from tests.support.api import (
    LIST_URL,
    PUBLIC_IMAGE,
    create_calls,
    image_bytes,
    make_task,
    refresh_url,
)

pytest_plugins = ["tests.support.api_fixtures"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]

SURROGATE = "\ud800"


def raw_json(body: dict) -> bytes:
    """``body`` as JSON bytes carrying lone surrogates as ``\\ud800`` escapes (what a
    client can send; a UTF-8 encoder cannot)."""
    return json.dumps(body).encode("ascii")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": f"hi {SURROGATE}", "image_urls": [PUBLIC_IMAGE]}, "prompt"),
        ({"prompt": "hi \udfff there", "image_urls": [PUBLIC_IMAGE]}, "prompt"),
        ({"prompt": "hi", "image_urls": [PUBLIC_IMAGE + SURROGATE]}, "image_urls"),
        ({"prompt": "hi", "image_urls": [f"https://{SURROGATE}.example.com/a.png"]},
         "image_urls"),
    ],
    ids=["prompt", "low surrogate", "url path", "url host"],
)
def test_a_lone_surrogate_in_a_json_create_is_refused_with_400(api, evolink_http, body, field):
    response = api.post(LIST_URL, raw_json(body), content_type="application/json")
    assert response.status_code == 400, response.content
    message = " ".join(response.json()[field])
    assert "surrogate" in message and "U+D800" in message
    assert not ImageTask.objects.exists() and not create_calls(evolink_http)


def test_a_surrogate_pair_is_a_whole_character_and_accepted(api, evolink_http):
    body = {"prompt": "a cat \U0001f600", "image_urls": [PUBLIC_IMAGE]}
    response = api.post(LIST_URL, raw_json(body), content_type="application/json")
    assert response.status_code == 201, response.content
    assert ImageTask.objects.get().prompt == "a cat \U0001f600"


def multipart(fields: dict[str, bytes], files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart body written byte by byte (the test client cannot send bad UTF-8)."""
    boundary = b"BoUnDaRy"
    parts = [b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
             % (boundary, name.encode(), value) for name, value in fields.items()]
    parts += [b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="a.png"\r\n'
              b"Content-Type: image/png\r\n\r\n%s\r\n" % (boundary, name.encode(), data)
              for name, data in files.items()]
    return b"".join(parts) + b"--%s--\r\n" % boundary, "multipart/form-data; boundary=BoUnDaRy"


def test_undecodable_bytes_in_a_multipart_prompt_never_answer_500(api, evolink_http):
    """Multipart fields are decoded with replacement characters: a surrogate's UTF-8-like
    bytes (``\\xed\\xa0\\x80``) arrive as U+FFFD, which is valid text."""
    body, content_type = multipart({"prompt": b"hi \xed\xa0\x80"},
                                   {"images": image_bytes()})
    response = api.post(LIST_URL, body, content_type=content_type)
    assert response.status_code == 201, response.content
    assert ImageTask.objects.get().prompt == "hi \ufffd\ufffd\ufffd"


@pytest.mark.parametrize("value", [f"hi {SURROGATE}", "a\x00b"], ids=["surrogate", "NUL"])
def test_services_create_task_refuses_unstorable_text_before_saving(evolink_http, value):
    with pytest.raises(EvolinkValidationError) as info:
        services.create_task(prompt=value, image_urls=[PUBLIC_IMAGE])
    assert "prompt" in info.value.errors
    with pytest.raises(EvolinkValidationError) as info:
        services.create_task(prompt="fine", image_urls=[PUBLIC_IMAGE + value])
    assert "image_urls" in info.value.errors
    assert not ImageTask.objects.exists() and not create_calls(evolink_http)


def test_the_submit_command_refuses_an_undecodable_prompt(evolink_http):
    """A command line with bytes that are not UTF-8 reaches Python as surrogates
    (``surrogateescape``): ``--prompt $'\\xff'`` is ``"\\udcff"``."""
    prompt = b"caf\xe9".decode("utf-8", "surrogateescape")
    with pytest.raises(CommandError) as info:
        call_command("evolink_submit", "--prompt", prompt, "--image", PUBLIC_IMAGE,
                     stdout=StringIO(), stderr=StringIO())
    assert "surrogate" in str(info.value)
    assert not ImageTask.objects.exists() and not create_calls(evolink_http)


# ------------------------------------------------------------------ bodies parsers refuse


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_in_a_create_answers_400(api, evolink_http, depth):
    body = '{"prompt": ' + nested(depth) + ', "image_urls": ["' + PUBLIC_IMAGE + '"]}'
    response = api.post(LIST_URL, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert "nested too deeply" in response.json()["detail"]
    assert not ImageTask.objects.exists() and not create_calls(evolink_http)


def test_every_api_endpoint_answers_a_deeply_nested_body_without_a_500(api, user, evolink_http):
    task, _raw = make_task(user)
    evolink_http.add("GET", "https://api.evolink.test/v1/tasks/" + task.evolink_id,
                     json={"id": task.evolink_id, "status": "processing", "progress": 10})
    body = nested(100_000)
    for method, url in (("POST", LIST_URL), ("POST", refresh_url(task)),
                        ("GET", LIST_URL), ("PUT", LIST_URL), ("PATCH", refresh_url(task))):
        response = api.generic(method, url, body, content_type="application/json")
        assert response.status_code < 500, (method, url, response.status_code)


def test_a_json_body_above_the_upload_limit_answers_400_without_being_read(api, settings,
                                                                           evolink_http):
    """DRF reads JSON from the raw stream, which ``DATA_UPLOAD_MAX_MEMORY_SIZE`` did not
    bound; the parser now stops after the limit."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    body = json.dumps({"prompt": "x" * 100_000, "image_urls": [PUBLIC_IMAGE]})
    response = api.post(LIST_URL, body, content_type="application/json")
    assert response.status_code == 400
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    assert not ImageTask.objects.exists()


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe not utf-8", b'{"prompt": NaN}', b'{"n": 1e999999}', b'{"n": ' + b"9" * 5000 + b"}",
     b"", b"{"],
    ids=["not utf-8", "NaN", "huge float", "5000 digits", "empty", "truncated"],
)
def test_bodies_the_json_parser_cannot_take_answer_400(api, evolink_http, body):
    response = api.post(LIST_URL, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert not ImageTask.objects.exists()
