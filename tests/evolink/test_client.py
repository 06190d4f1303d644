"""Tests of :mod:`django_evolink.client` (no network: ``responses`` mocks every call).

Every exception a test provokes goes through :func:`expect`, which also checks that the
API key appears nowhere in it (``str``, ``repr``, ``args``, the formatted traceback) and
that it carries no chained requests exception.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
import traceback
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.client import RemoteDisconnected

import jsonschema
import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError

from django_evolink import __version__
from django_evolink.evolink import client as client_module
from django_evolink.evolink.client import EvolinkClient, get_client, parse_retry_after
from django_evolink.exceptions import (
    EvolinkAPIError,
    EvolinkAuthenticationError,
    EvolinkConfigurationError,
    EvolinkConnectionError,
    EvolinkError,
    EvolinkInsufficientQuotaError,
    EvolinkInternalServerError,
    EvolinkInvalidRequestError,
    EvolinkMalformedResponseError,
    EvolinkNotFoundError,
    EvolinkOutcomeUnknownError,
    EvolinkPermissionError,
    EvolinkRateLimitError,
    EvolinkRequestTooLargeError,
    EvolinkServiceUnavailableError,
    EvolinkTimeoutError,
    EvolinkUpstreamError,
)
from tests.support import evolink_samples as samples

KEY = "sk-evo-unit-test-key-SECRET-42"
BASE = "https://api.evolink.test"
FILES = "https://files-api.evolink.test"
CREATE_URL = BASE + "/v1/images/generations"
TASK_URL = BASE + "/v1/tasks/" + samples.TASK_ID
CREDITS_URL = BASE + "/v1/credits"
UPLOAD_URL = FILES + "/api/v1/files/upload/stream"
IMAGE = "https://example.com/cat.png"

ERROR_CLASSES = {
    400: EvolinkInvalidRequestError,
    401: EvolinkAuthenticationError,
    402: EvolinkInsufficientQuotaError,
    403: EvolinkPermissionError,
    404: EvolinkNotFoundError,
    413: EvolinkRequestTooLargeError,
    429: EvolinkRateLimitError,
    500: EvolinkInternalServerError,
    502: EvolinkUpstreamError,
    503: EvolinkServiceUnavailableError,
}

# ---------------------------------------------------------------------------- helpers


class SleepRecorder:
    """Stands in for ``time.sleep``: records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def assert_no_leak(exc: BaseException, key: str = KEY) -> None:
    texts = [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
    for attr in ("message", "body"):
        texts.append(repr(getattr(exc, attr, None)))
    for text in texts:
        assert key not in text
        assert "Bearer " + key[:6] not in text
    # raised outside the except block: no requests exception (which holds the
    # request and its Authorization header) hangs off the error
    assert exc.__cause__ is None
    assert exc.__context__ is None


def expect(exc_class: type[BaseException], func, *args, key: str = KEY, **kwargs):
    """Call ``func`` expecting ``exc_class``; check the error leaks nothing; return it."""
    with pytest.raises(exc_class) as info:
        func(*args, **kwargs)
    assert_no_leak(info.value, key)
    return info.value


def connection_refused() -> requests.exceptions.ConnectionError:
    """What requests raises when nothing listens (the request never left)."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/v1/x", reason))


def dns_failure() -> requests.exceptions.ConnectionError:
    reason = NameResolutionError("api.evolink.test", None, OSError("no such host"))
    return requests.exceptions.ConnectionError(MaxRetryError(None, "/v1/x", reason))


def connect_timeout() -> requests.exceptions.ConnectTimeout:
    return requests.exceptions.ConnectTimeout("HTTPSConnectionPool: connect timed out")


def connection_reset() -> requests.exceptions.ConnectionError:
    """What requests raises when the server hangs up after the request was sent."""
    return requests.exceptions.ConnectionError(
        ProtocolError(
            "Connection aborted.",
            RemoteDisconnected("Remote end closed connection without response"),
        )
    )


def read_timeout() -> requests.exceptions.ReadTimeout:
    return requests.exceptions.ReadTimeout("HTTPSConnectionPool: Read timed out. (read timeout=30)")


def broken_answer() -> requests.exceptions.ChunkedEncodingError:
    return requests.exceptions.ChunkedEncodingError(
        "Connection broken: IncompleteRead(0 bytes read)"
    )


def make_client(**kwargs) -> EvolinkClient:
    options = {
        "api_key": KEY,
        "base_url": BASE,
        "files_base_url": FILES,
        "connect_timeout": 2.0,
        "read_timeout": 7.0,
        "max_retries": 3,
        "backoff": 0.5,
        "max_wait": 30.0,
        "sleep": SleepRecorder(),
    }
    options.update(kwargs)
    return EvolinkClient(**options)


def create(client: EvolinkClient, **kwargs) -> dict:
    return client.create_image_task(
        model=samples.MODEL, prompt="A starry sky", image_urls=[IMAGE], **kwargs
    )


def upload(client: EvolinkClient, content: bytes = b"\x89PNG fake image", **kwargs) -> dict:
    kwargs.setdefault("file_name", "photo.png")
    return client.upload_file(content, **kwargs)


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client() -> EvolinkClient:
    return make_client()


# ---------------------------------------------------------------------------- schemas


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = samples.load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


@pytest.mark.parametrize("status", ["pending", "processing", "completed", "failed", "cancelled"])
def test_task_answer_matches_schema(status):
    error = ({"code": "service_error", "message": "The service failed"}
             if status in ("failed", "cancelled") else None)
    _validator("task").validate(samples.task_answer(status=status, error=error))


def test_a_failed_task_without_its_error_object_breaks_the_schema():
    # Evolink's failed tasks always carry error {code, message} (evolink-api.md §7)
    with pytest.raises(jsonschema.ValidationError, match="'error' is a required property"):
        _validator("task").validate(samples.task_answer(status="failed"))


def test_task_answer_with_results_and_seed_example_match_schema():
    validator = _validator("task")
    validator.validate(
        samples.task_answer(status="completed", results=samples.result_urls(n=4), progress=100)
    )
    seed = {
        "created": 1757156493,
        "id": "task-unified-1757156493-imcg5zqt",
        "model": "wan2.5-image-to-image",
        "object": "image.generation.task",
        "progress": 0,
        "status": "pending",
        "task_info": {"can_cancel": True, "estimated_time": 30},
        "type": "image",
        "usage": {"billing_rule": "per_call", "credits_reserved": 1.2, "user_group": "default"},
    }
    validator.validate(seed)
    assert samples.task_answer() == seed


@pytest.mark.parametrize(
    "change",
    [
        {"progress": 101},
        {"progress": -1},
        {"progress": 12.5},
        {"status": "done"},
        {"object": "chat.completion"},
        {"type": "picture"},
        {"usage": {"billing_rule": "per_image", "credits_reserved": 1, "user_group": "x"}},
        {"usage": {"billing_rule": "per_call", "credits_reserved": "1.2", "user_group": "x"}},
        {"task_info": {"can_cancel": "yes", "estimated_time": 30}},
        {"results": ["not a url"]},
        {"id": None},
    ],
)
def test_task_schema_rejects_bad_answers(change):
    answer = samples.task_answer(status="processing")
    answer.update(change)
    assert not _validator("task").is_valid(answer)


def test_task_schema_requires_results_when_completed():
    answer = samples.task_answer(status="completed")
    del answer["results"]
    assert not _validator("task").is_valid(answer)
    for field in ("created", "id", "status", "progress", "usage", "task_info"):
        answer = samples.task_answer()
        del answer[field]
        assert not _validator("task").is_valid(answer), field


def test_credits_and_upload_answers_match_schemas():
    _validator("credits").validate(samples.credits_answer())
    _validator("credits").validate(samples.credits_answer(unlimited=True))
    _validator("upload").validate(samples.upload_answer())
    _validator("upload").validate(
        samples.upload_answer("a.webp", mime_type="image/webp", upload_path="")
    )
    bad = samples.upload_answer()
    bad["data"]["mime_type"] = "application/pdf"
    assert not _validator("upload").is_valid(bad)
    bad = samples.credits_answer()
    del bad["data"]["user"]
    assert not _validator("credits").is_valid(bad)


@pytest.mark.parametrize("status", sorted(samples.ERROR_TYPES))
def test_error_answers_match_schema(status):
    validator = _validator("error")
    validator.validate(samples.error_answer(status, samples.ERROR_TYPES[status], "Something"))
    validator.validate(
        samples.error_answer(status, None, "x", param="prompt", fallback_suggestion="later")
    )


def test_error_schema_ties_type_to_status():
    validator = _validator("error")
    assert not validator.is_valid(samples.error_answer(400, "rate_limit_error", "x"))
    assert not validator.is_valid(samples.error_answer(418, "teapot_error", "x"))
    assert not validator.is_valid({"error": {"code": 400, "type": "invalid_request_error"}})


# ---------------------------------------------------------------------------- calls


def test_create_sends_json_headers_and_returns_task(rsps, client):
    rsps.post(CREATE_URL, json=samples.task_answer())
    answer = create(client, n=2, callback_url="https://site.example/evolink/callback/tok/")
    assert answer == samples.task_answer()
    request = rsps.calls[0].request
    assert json.loads(request.body) == {
        "model": samples.MODEL,
        "prompt": "A starry sky",
        "image_urls": [IMAGE],
        "n": 2,
        "callback_url": "https://site.example/evolink/callback/tok/",
    }
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["User-Agent"] == (
        f"django-evolink/{__version__} (+requests/{requests.__version__})"
    )
    assert request.headers["Content-Type"] == "application/json"


def test_create_omits_none_fields(rsps, client):
    rsps.post(CREATE_URL, json=samples.task_answer())
    create(client)
    assert json.loads(rsps.calls[0].request.body) == {
        "model": samples.MODEL,
        "prompt": "A starry sky",
        "image_urls": [IMAGE],
    }


def test_timeouts_are_separate_connect_and_read(client, monkeypatch):
    seen = {}

    def fake_request(method, url, **kwargs):
        seen.update(kwargs)
        raise connection_refused()

    monkeypatch.setattr(client.session, "request", fake_request)
    expect(EvolinkConnectionError, client.get_credits)
    assert seen["timeout"] == (2.0, 7.0)
    assert seen["allow_redirects"] is False


def test_pool_size_reaches_the_adapter():
    client = make_client(pool_size=17)
    adapter = client.session.get_adapter(BASE)
    assert adapter._pool_maxsize == 17
    assert adapter.max_retries.total == 0


def test_get_task_quotes_the_id(rsps, client):
    rsps.get(BASE + "/v1/tasks/a%2Fb%20c%3F", json=samples.task_answer(id="a/b c?"))
    assert client.get_task("a/b c?")["id"] == "a/b c?"
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


def test_get_task_refuses_an_empty_id(client):
    with pytest.raises(ValueError):
        client.get_task("")


def test_get_task_completed(rsps, client):
    rsps.get(TASK_URL, json=samples.task_answer(status="completed"))
    answer = client.get_task(samples.TASK_ID)
    assert answer["results"] == samples.result_urls()


def test_get_credits_returns_the_whole_answer(rsps, client):
    rsps.get(CREDITS_URL, json=samples.credits_answer())
    assert client.get_credits() == samples.credits_answer()


def test_upload_sends_multipart_and_returns_data(rsps, client):
    rsps.post(UPLOAD_URL, json=samples.upload_answer())
    data = upload(client, b"\x89PNG-bytes", upload_path="photos")
    assert data == samples.upload_answer()["data"]
    request = rsps.calls[0].request
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    body = request.body
    assert b'Content-Disposition: form-data; name="file"; filename="photo.png"' in body
    assert b"Content-Type: image/png" in body
    assert b"\x89PNG-bytes" in body
    assert b'name="file_name"\r\n\r\nphoto.png\r\n' in body
    assert b'name="upload_path"\r\n\r\nphotos\r\n' in body


def test_upload_from_file_object_with_explicit_type_and_no_path(rsps, client):
    rsps.post(UPLOAD_URL, json=samples.upload_answer("pic.jpg", mime_type="image/jpeg"))
    data = client.upload_file(
        io.BytesIO(b"JPEGDATA"), file_name="pic.jpg", content_type="image/jpeg"
    )
    assert data["mime_type"] == "image/jpeg"
    body = rsps.calls[0].request.body
    assert b"Content-Type: image/jpeg" in body
    assert b"JPEGDATA" in body
    assert b'name="upload_path"' not in body


@pytest.mark.parametrize(
    ("answer", "exc_class", "status"),
    [
        (
            {"success": False, "code": 400, "msg": "Unsupported file type"},
            EvolinkInvalidRequestError,
            400,
        ),
        ({"success": False, "code": 401, "msg": "Invalid key"}, EvolinkAuthenticationError, 401),
        (
            {"success": False, "code": 402, "msg": "Upload quota exceeded"},
            EvolinkInsufficientQuotaError,
            402,
        ),
        ({"success": False, "msg": "Something went wrong"}, EvolinkInvalidRequestError, 400),
    ],
)
def test_upload_success_false_raises_typed_error(rsps, client, answer, exc_class, status):
    rsps.post(UPLOAD_URL, json=answer)
    exc = expect(exc_class, upload, client)
    assert exc.status == status
    assert exc.message == answer["msg"]
    assert exc.body == answer
    assert len(rsps.calls) == 1


def test_upload_answer_without_data_is_malformed(rsps, client):
    rsps.post(UPLOAD_URL, json={"success": True, "code": 200, "msg": "ok"})
    expect(EvolinkMalformedResponseError, upload, client)


def test_upload_http_error_in_files_api_shape(rsps, client):
    rsps.post(UPLOAD_URL, status=413, json={"success": False, "code": 413, "msg": "File too large",
                                            "param": "file"})
    exc = expect(EvolinkRequestTooLargeError, upload, client)
    assert exc.status == 413 and exc.param == "file" and not exc.retryable
    assert exc.message == "File too large"
    assert len(rsps.calls) == 1


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("status", sorted(ERROR_CLASSES))
def test_every_error_type_maps_to_its_class(rsps, status):
    client = make_client(max_retries=0)
    error_type = samples.ERROR_TYPES[status]
    body = samples.error_answer(
        status,
        error_type,
        f"Evolink says {status}",
        param="image_urls",
        fallback_suggestion="https://evolink.ai/billing",
    )
    rsps.post(CREATE_URL, status=status, json=body)
    exc = expect(ERROR_CLASSES[status], create, client)
    assert type(exc) is ERROR_CLASSES[status]
    assert exc.status == status
    assert exc.type == error_type
    assert exc.code == error_type
    assert exc.message == f"Evolink says {status}"
    assert exc.param == "image_urls"
    assert exc.fallback_suggestion == "https://evolink.ai/billing"
    assert exc.body == body
    assert f"HTTP {status}" in str(exc)
    assert "param=image_urls" in str(exc)


@pytest.mark.parametrize("status", sorted(ERROR_CLASSES))
def test_error_class_by_status_when_type_is_unknown(rsps, status):
    client = make_client(max_retries=0)
    rsps.get(CREDITS_URL, status=status, json=samples.error_answer(status, "brand_new_error", "m"))
    exc = expect(ERROR_CLASSES[status], client.get_credits)
    assert exc.type == "brand_new_error"


def test_type_wins_over_status(rsps, client):
    rsps.post(
        CREATE_URL, status=400, json=samples.error_answer(400, "insufficient_quota_error", "no")
    )
    exc = expect(EvolinkInsufficientQuotaError, create, client)
    assert exc.status == 400


def test_unknown_status_gives_base_api_error(rsps, client):
    rsps.post(
        CREATE_URL, status=418, json=samples.error_answer(418, "teapot_error", "short and stout")
    )
    exc = expect(EvolinkAPIError, create, client)
    assert type(exc) is EvolinkAPIError
    assert exc.status == 418


def test_unknown_5xx_on_get_is_internal_server_error(rsps):
    client = make_client(max_retries=0)
    rsps.get(CREDITS_URL, status=504, body="gateway timeout")
    exc = expect(EvolinkInternalServerError, client.get_credits)
    assert exc.status == 504


def test_html_502_page_gives_typed_error_with_short_excerpt(rsps):
    client = make_client(max_retries=0)
    page = "<html><head><title>502 Bad Gateway</title></head><body>" + "x" * 5000 + "</body></html>"
    rsps.get(TASK_URL, status=502, body=page, content_type="text/html")
    exc = expect(EvolinkUpstreamError, client.get_task, samples.TASK_ID)
    assert exc.status == 502
    assert "502 Bad Gateway" in exc.message
    assert "text/html" in exc.message
    assert "x" * 250 not in exc.message
    assert len(exc.message) < 350
    assert exc.body is None


def test_empty_error_body(rsps):
    client = make_client(max_retries=0)
    rsps.get(TASK_URL, status=503, body="")
    exc = expect(EvolinkServiceUnavailableError, client.get_task, samples.TASK_ID)
    assert "empty body" in exc.message
    assert exc.status == 503


def test_json_error_without_error_object(rsps, client):
    rsps.post(CREATE_URL, status=400, json={"detail": "nope"})
    exc = expect(EvolinkInvalidRequestError, create, client)
    assert "without an error object" in exc.message
    assert '"detail": "nope"' in exc.message
    assert exc.body == {"detail": "nope"}


def test_error_object_without_message(rsps, client):
    rsps.post(CREATE_URL, status=404, json={"error": {"type": "not_found_error"}})
    exc = expect(EvolinkNotFoundError, create, client)
    assert "404" in exc.message


def test_error_body_echoing_the_key_is_redacted(rsps, client):
    message = f"Invalid key {KEY} (Authorization: Bearer {KEY})"
    rsps.post(
        CREATE_URL, status=401, json=samples.error_answer(401, "authentication_error", message)
    )
    exc = expect(EvolinkAuthenticationError, create, client)
    assert "[redacted]" in exc.message


def test_non_pattern_key_echoed_in_html_is_redacted(rsps):
    secret = "plainsecretvalue987"
    client = make_client(api_key=secret, max_retries=0)
    rsps.get(CREDITS_URL, status=500, body=f"<p>bad key {secret}</p>")
    exc = expect(EvolinkInternalServerError, client.get_credits, key=secret)
    assert "[redacted]" in exc.message


@pytest.mark.parametrize(
    "body", ["<html>ok</html>", "", "[1, 2]", "null", '"text"', "{broken json"]
)
def test_2xx_that_is_not_a_json_object_is_malformed(rsps, client, body):
    rsps.get(CREDITS_URL, status=200, body=body)
    exc = expect(EvolinkMalformedResponseError, client.get_credits)
    assert exc.status == 200
    assert len(rsps.calls) == 1


def test_redirect_is_not_followed(rsps, client):
    rsps.get(CREDITS_URL, status=301, headers={"Location": "https://elsewhere.example/"})
    exc = expect(EvolinkAPIError, client.get_credits)
    assert exc.status == 301
    assert len(rsps.calls) == 1


def test_tls_error_is_a_connection_error_not_retried(rsps, client):
    rsps.get(CREDITS_URL, body=requests.exceptions.SSLError("certificate verify failed"))
    expect(EvolinkConnectionError, client.get_credits)
    assert len(rsps.calls) == 1


def test_missing_key_raises_configuration_error_only_on_request(settings, monkeypatch, rsps):
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    settings.EVOLINK = {"BASE_URL": BASE}
    client = EvolinkClient(sleep=SleepRecorder())  # building it is fine
    assert "missing" in repr(client)
    exc = expect(EvolinkConfigurationError, client.get_credits)
    assert "EVOLINK_API_KEY" in str(exc)
    assert len(rsps.calls) == 0


def test_key_from_environment(settings, monkeypatch, rsps):
    monkeypatch.setenv("EVOLINK_API_KEY", KEY)
    settings.EVOLINK = {"BASE_URL": BASE}
    rsps.get(CREDITS_URL, json=samples.credits_answer())
    EvolinkClient().get_credits()
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


# ---------------------------------------------------------------------------- GET retries


@pytest.mark.parametrize(
    ("make_error", "exc_class"),
    [
        (connection_refused, EvolinkConnectionError),
        (dns_failure, EvolinkConnectionError),
        (connect_timeout, EvolinkConnectionError),
        (connection_reset, EvolinkConnectionError),
        (broken_answer, EvolinkConnectionError),
        (read_timeout, EvolinkTimeoutError),
    ],
)
def test_get_transport_errors_retried_up_to_max_retries(rsps, client, make_error, exc_class):
    rsps.get(TASK_URL, body=make_error())
    expect(exc_class, client.get_task, samples.TASK_ID)
    assert len(rsps.calls) == 4  # 1 + MAX_RETRIES
    assert len(client._sleep.waits) == 3


@pytest.mark.parametrize("make_error", [connection_refused, read_timeout, connection_reset])
def test_get_recovers_on_a_later_attempt(rsps, client, make_error):
    rsps.get(TASK_URL, body=make_error())
    rsps.get(TASK_URL, body=make_error())
    rsps.get(TASK_URL, json=samples.task_answer(status="processing"))
    assert client.get_task(samples.TASK_ID)["status"] == "processing"
    assert len(rsps.calls) == 3


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_get_retryable_statuses_exhaust_retries(rsps, client, status):
    body = samples.error_answer(status) if status in ERROR_CLASSES else {"error": {"message": "gw"}}
    rsps.get(CREDITS_URL, status=status, json=body)
    exc = expect(EvolinkAPIError, client.get_credits)
    assert exc.status == status
    assert len(rsps.calls) == 4


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_get_retryable_status_then_success(rsps, client, status):
    rsps.get(CREDITS_URL, status=status, json={"error": {"message": "later"}})
    rsps.get(CREDITS_URL, json=samples.credits_answer())
    assert client.get_credits()["success"] is True
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404])
def test_get_client_errors_not_retried(rsps, client, status):
    rsps.get(TASK_URL, status=status, json=samples.error_answer(status))
    expect(ERROR_CLASSES[status], client.get_task, samples.TASK_ID)
    assert len(rsps.calls) == 1
    assert client._sleep.waits == []


@pytest.mark.parametrize("max_retries", [0, 1, 5])
def test_max_retries_is_the_limit(rsps, max_retries):
    client = make_client(max_retries=max_retries)
    rsps.get(CREDITS_URL, status=503, json=samples.error_answer(503))
    expect(EvolinkServiceUnavailableError, client.get_credits)
    assert len(rsps.calls) == max_retries + 1
    assert len(client._sleep.waits) == max_retries


# ---------------------------------------------------------------------------- POST retries


@pytest.mark.parametrize("make_error", [connection_refused, dns_failure, connect_timeout])
def test_create_retried_when_never_connected(rsps, client, make_error):
    rsps.post(CREATE_URL, body=make_error())
    expect(EvolinkConnectionError, create, client)
    assert len(rsps.calls) == 4


def test_create_succeeds_after_refused_connection(rsps, client):
    rsps.post(CREATE_URL, body=connection_refused())
    rsps.post(CREATE_URL, body=connect_timeout())
    rsps.post(CREATE_URL, json=samples.task_answer())
    assert create(client)["id"] == samples.TASK_ID
    assert len(rsps.calls) == 3


@pytest.mark.parametrize(
    "make_error",
    [
        read_timeout,
        connection_reset,
        broken_answer,
        lambda: requests.exceptions.ConnectionError("connection dropped"),
    ],
)
def test_create_never_resent_when_it_may_have_arrived(rsps, client, make_error):
    rsps.post(CREATE_URL, body=make_error())
    rsps.post(CREATE_URL, json=samples.task_answer())
    exc = expect(EvolinkOutcomeUnknownError, create, client)
    assert exc.code == "outcome_unknown"
    assert "not resent" in str(exc)
    assert len(rsps.calls) == 1
    assert client._sleep.waits == []


@pytest.mark.parametrize("status", [500, 502, 504])
def test_create_not_retried_after_server_errors(rsps, client, status):
    body = samples.error_answer(status) if status in ERROR_CLASSES else {"error": {"message": "gw"}}
    rsps.post(CREATE_URL, status=status, json=body)
    rsps.post(CREATE_URL, json=samples.task_answer())
    exc = expect(EvolinkAPIError, create, client)
    assert exc.status == status
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_create_retried_on_429_and_503(rsps, client, status):
    rsps.post(CREATE_URL, status=status, json=samples.error_answer(status))
    exc = expect(ERROR_CLASSES[status], create, client)
    assert len(rsps.calls) == 4
    assert exc.status == status


def test_create_429_then_success(rsps, client):
    rsps.post(CREATE_URL, status=429, json=samples.error_answer(429), headers={"Retry-After": "3"})
    rsps.post(CREATE_URL, json=samples.task_answer())
    assert create(client)["status"] == "pending"
    assert len(rsps.calls) == 2
    assert client._sleep.waits == [3.0]


def test_exhausted_429_keeps_retry_after(rsps, client):
    rsps.post(
        CREATE_URL,
        status=429,
        json=samples.error_answer(429, message="retry after 60 seconds"),
        headers={"Retry-After": "60"},
    )
    exc = expect(EvolinkRateLimitError, create, client)
    assert exc.retry_after == 60.0
    assert exc.message == "retry after 60 seconds"
    assert len(rsps.calls) == 4


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404])
def test_create_client_errors_not_retried(rsps, client, status):
    rsps.post(CREATE_URL, status=status, json=samples.error_answer(status))
    expect(ERROR_CLASSES[status], create, client)
    assert len(rsps.calls) == 1


def test_upload_read_timeout_is_outcome_unknown(rsps, client):
    rsps.post(UPLOAD_URL, body=read_timeout())
    expect(EvolinkOutcomeUnknownError, upload, client)
    assert len(rsps.calls) == 1


@pytest.mark.parametrize("status", [500, 502])
def test_upload_not_retried_after_server_errors(rsps, client, status):
    rsps.post(UPLOAD_URL, status=status, json=samples.error_answer(status))
    expect(ERROR_CLASSES[status], upload, client)
    assert len(rsps.calls) == 1


def test_upload_retried_on_503_and_refused_resends_the_same_file(rsps, client):
    rsps.post(UPLOAD_URL, status=503, json=samples.error_answer(503))
    rsps.post(UPLOAD_URL, body=connection_refused())
    rsps.post(UPLOAD_URL, json=samples.upload_answer())
    data = client.upload_file(io.BytesIO(b"IMAGEBYTES"), file_name="photo.png")
    assert data["file_id"] == "file_abc123"
    assert len(rsps.calls) == 3
    assert b"IMAGEBYTES" in rsps.calls[2].request.body


def test_upload_429_exhausts_retries(rsps, client):
    rsps.post(UPLOAD_URL, status=429, json=samples.error_answer(429))
    expect(EvolinkRateLimitError, upload, client)
    assert len(rsps.calls) == 4


# ------------------------------------------------- real sockets on 127.0.0.1 (no mocks)


class LoopbackServer:
    """A tiny TCP server on 127.0.0.1 that misbehaves in one way after reading a request.

    ``close``: hangs up without answering; ``hang``: never answers; ``partial``: sends a
    truncated body. It proves the error classification with the exceptions requests and
    urllib3 really raise, not hand-built ones.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            if not conn.recv(65536):
                return
            self.requests += 1
            if self.mode == "hang":
                time.sleep(1.0)
            elif self.mode == "partial":
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"a":')

    def close(self) -> None:
        self.sock.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("mode", "get_error", "post_error"),
    [
        ("refused", EvolinkConnectionError, EvolinkConnectionError),
        ("close", EvolinkConnectionError, EvolinkOutcomeUnknownError),
        ("hang", EvolinkTimeoutError, EvolinkOutcomeUnknownError),
        ("partial", EvolinkConnectionError, EvolinkOutcomeUnknownError),
    ],
)
def test_real_transport_failures(mode, get_error, post_error):
    server = None if mode == "refused" else LoopbackServer(mode)
    port = _free_port() if server is None else server.port
    try:
        client = make_client(base_url=f"http://127.0.0.1:{port}", read_timeout=0.3, max_retries=2)
        expect(get_error, client.get_credits)
        assert len(client._sleep.waits) == 2  # GET: retried twice
        client._sleep.waits.clear()
        expect(post_error, create, client)
        retried = post_error is EvolinkConnectionError
        assert len(client._sleep.waits) == (2 if retried else 0)
        if server is not None:
            assert server.requests == 4  # 3 GETs + 1 POST, never resent
    finally:
        if server is not None:
            server.close()


# ---------------------------------------------------------------------------- waits


def test_backoff_is_full_jitter_within_exponential_bounds(rsps):
    for _ in range(20):
        client = make_client(backoff=0.5, max_wait=30.0, max_retries=4)
        rsps.get(CREDITS_URL, status=503, json=samples.error_answer(503))
        expect(EvolinkServiceUnavailableError, client.get_credits)
        waits = client._sleep.waits
        assert len(waits) == 4
        for attempt, wait in enumerate(waits):
            assert 0.0 <= wait <= 0.5 * 2**attempt


def test_backoff_doubles_and_is_capped(rsps, monkeypatch):
    client = make_client(backoff=2.0, max_wait=10.0, max_retries=5)
    monkeypatch.setattr(client._rng, "uniform", lambda low, high: high)  # worst case
    rsps.get(CREDITS_URL, body=connection_refused())
    expect(EvolinkConnectionError, client.get_credits)
    assert client._sleep.waits == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_zero_backoff_does_not_wait(rsps):
    client = make_client(backoff=0.0, max_wait=0.0)
    rsps.get(CREDITS_URL, status=500, json=samples.error_answer(500))
    expect(EvolinkInternalServerError, client.get_credits)
    assert client._sleep.waits == [0.0, 0.0, 0.0]


def test_retry_after_seconds_honoured(rsps, client):
    rsps.get(CREDITS_URL, status=503, json=samples.error_answer(503), headers={"Retry-After": "7"})
    exc = expect(EvolinkServiceUnavailableError, client.get_credits)
    assert client._sleep.waits == [7.0, 7.0, 7.0]
    assert exc.retry_after == 7.0


def test_retry_after_capped_at_max_wait(rsps):
    client = make_client(max_wait=5.0)
    rsps.get(
        CREDITS_URL, status=429, json=samples.error_answer(429), headers={"Retry-After": "120"}
    )
    exc = expect(EvolinkRateLimitError, client.get_credits)
    assert client._sleep.waits == [5.0, 5.0, 5.0]
    assert exc.retry_after == 120.0  # what Evolink said, for the caller


def test_retry_after_http_date_honoured(rsps, client):
    when = datetime.now(timezone.utc) + timedelta(seconds=20)
    rsps.get(
        CREDITS_URL,
        status=429,
        json=samples.error_answer(429),
        headers={"Retry-After": format_datetime(when, usegmt=True)},
    )
    rsps.get(CREDITS_URL, json=samples.credits_answer())
    client.get_credits()
    [wait] = client._sleep.waits
    assert 17.0 <= wait <= 20.0


def test_parse_retry_after():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Wed, 01 Jan 2025 00:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Tue, 31 Dec 2024 23:59:00 GMT", now=now) == 0.0


def test_sleep_defaults_to_time_sleep():
    assert EvolinkClient(api_key=KEY)._sleep is client_module.time.sleep


# ---------------------------------------------------------------------------- secrecy


def test_repr_never_shows_the_key(client):
    assert KEY not in repr(client)
    assert "api_key=set" in repr(client)
    assert BASE in repr(client)


def test_debug_logs_method_path_status_and_never_the_key(rsps, client, caplog):
    caplog.set_level(logging.DEBUG)
    rsps.get(TASK_URL, status=503, json=samples.error_answer(503))
    rsps.get(TASK_URL, body=read_timeout())
    rsps.get(TASK_URL, json=samples.task_answer())
    client.get_task(samples.TASK_ID)
    rsps.post(CREATE_URL, status=401, json=samples.error_answer(401, message=f"bad {KEY}"))
    expect(EvolinkAuthenticationError, create, client)
    records = [r for r in caplog.records if r.name == "django_evolink.client"]
    messages = [r.getMessage() for r in records]
    assert all(r.levelno == logging.DEBUG for r in records
               if "refused the API key" not in r.getMessage())
    assert any(f"GET /v1/tasks/{samples.TASK_ID} -> 503 in" in m for m in messages)
    assert any(f"GET /v1/tasks/{samples.TASK_ID} -> EvolinkTimeoutError in" in m for m in messages)
    assert any(f"GET /v1/tasks/{samples.TASK_ID} -> 200 in" in m for m in messages)
    assert any("POST /v1/images/generations -> 401 in" in m for m in messages)
    assert any("retry 1/3" in m for m in messages)
    assert KEY not in caplog.text
    assert "Bearer" not in caplog.text
    assert "Authorization" not in caplog.text


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_logs_where_the_key_is_set_and_never_the_key(rsps, client, caplog, status):
    caplog.set_level(logging.INFO)
    rsps.post(CREATE_URL, status=status,
              json=samples.error_answer(status, "authentication_error", f"Invalid key {KEY}"))
    expect(EvolinkAuthenticationError, create, client)
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR
    assert "EVOLINK_API_KEY" in record.getMessage()
    assert "EVOLINK['API_KEY']" in record.getMessage()
    assert f"HTTP {status} authentication_error" in record.getMessage()
    assert KEY not in caplog.text and KEY[-6:] not in caplog.text


def test_other_refusals_do_not_blame_the_key(rsps, client, caplog):
    caplog.set_level(logging.INFO)
    rsps.post(CREATE_URL, status=403, json=samples.error_answer(403, "permission_error"))
    expect(EvolinkPermissionError, create, client)
    assert "EVOLINK_API_KEY" not in caplog.text


def test_every_kind_of_error_leaks_nothing(rsps, settings, monkeypatch):
    """One of each error the client raises, its message built from a key-echoing body."""
    echo = f"key {KEY} / Bearer {KEY}"
    client = make_client(max_retries=0)
    raised = []
    for status, exc_class in ERROR_CLASSES.items():
        rsps.post(CREATE_URL, status=status, json=samples.error_answer(status, message=echo))
        raised.append(expect(exc_class, create, client))
        rsps.replace(responses.POST, CREATE_URL, status=status, body=f"<b>{echo}</b>")
        raised.append(expect(exc_class, create, client))
        rsps.remove(responses.POST, CREATE_URL)
    rsps.get(CREDITS_URL, status=200, body=echo)
    raised.append(expect(EvolinkMalformedResponseError, client.get_credits))
    rsps.post(UPLOAD_URL, json={"success": False, "code": 400, "msg": echo})
    raised.append(expect(EvolinkInvalidRequestError, upload, client))
    for make_error, exc_class in [
        (lambda: requests.exceptions.ConnectionError(echo), EvolinkOutcomeUnknownError),
        (lambda: requests.exceptions.ReadTimeout(echo), EvolinkOutcomeUnknownError),
    ]:
        rsps.post(CREATE_URL, body=make_error())
        raised.append(expect(exc_class, create, client))
        rsps.remove(responses.POST, CREATE_URL)
    rsps.get(TASK_URL, body=requests.exceptions.ReadTimeout(echo))
    raised.append(expect(EvolinkTimeoutError, client.get_task, samples.TASK_ID))
    rsps.replace(responses.GET, TASK_URL, body=requests.exceptions.ConnectionError(echo))
    raised.append(expect(EvolinkConnectionError, client.get_task, samples.TASK_ID))
    monkeypatch.delenv("EVOLINK_API_KEY", raising=False)
    settings.EVOLINK = {}
    raised.append(expect(EvolinkConfigurationError, EvolinkClient().get_credits))
    for exc in raised:
        assert isinstance(exc, EvolinkError)
        if not isinstance(exc, EvolinkConfigurationError):
            assert "[redacted]" in str(exc) or "HTTP" in str(exc)


# ---------------------------------------------------------------------------- get_client


def test_get_client_is_shared_and_rebuilt_on_settings_change(settings):
    settings.EVOLINK = {"API_KEY": KEY, "BASE_URL": BASE, "MAX_RETRIES": 2}
    first = get_client()
    assert get_client() is first
    assert first.base_url == BASE
    assert first.max_retries == 2

    settings.EVOLINK = {"API_KEY": KEY, "BASE_URL": "https://other.evolink.test/", "MAX_RETRIES": 2}
    second = get_client()
    assert second is not first
    assert second.base_url == "https://other.evolink.test"

    settings.EVOLINK = {
        "API_KEY": "sk-evo-another",
        "BASE_URL": "https://other.evolink.test/",
        "MAX_RETRIES": 2,
    }
    third = get_client()
    assert third is not second
    assert third._api_key == "sk-evo-another"

    settings.EVOLINK = {
        "API_KEY": "sk-evo-another",
        "BASE_URL": "https://other.evolink.test/",
        "MAX_RETRIES": 2,
        "READ_TIMEOUT": 99.0,
        "POOL_SIZE": 3,
        "CONNECT_TIMEOUT": 1.0,
        "RETRY_BACKOFF": 0.1,
        "RETRY_MAX_WAIT": 2.0,
        "FILES_BASE_URL": "https://f.evolink.test",
    }
    fourth = get_client()
    assert fourth is not third
    assert (fourth.read_timeout, fourth.connect_timeout, fourth.pool_size) == (99.0, 1.0, 3)
    assert (fourth.backoff, fourth.max_wait, fourth.files_base_url) == (
        0.1,
        2.0,
        "https://f.evolink.test",
    )
    # a setting the client does not use leaves the instance alone
    settings.EVOLINK = {**settings.EVOLINK, "PAGE_SIZE": 5}
    assert get_client() is fourth


def test_get_client_uses_current_settings(settings, rsps):
    settings.EVOLINK = {"API_KEY": KEY, "BASE_URL": "https://one.evolink.test"}
    rsps.get("https://one.evolink.test/v1/credits", json=samples.credits_answer())
    assert get_client().get_credits()["success"] is True


def test_get_client_is_thread_safe(settings):
    settings.EVOLINK = {"API_KEY": KEY, "BASE_URL": "https://threads.evolink.test"}
    seen: list[EvolinkClient] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        seen.append(get_client())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert len({id(c) for c in seen}) == 1


# ------------------------------------------------------------------- the environment --


def test_proxies_and_ca_bundle_come_from_the_environment_read_once_per_origin(rsps, monkeypatch):
    """The environment's proxy (honouring NO_PROXY by host) and CA bundle are used, read
    when an origin is first spoken to, not scanned again on every request."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "files-api.evolink.test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/example-bundle.pem")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    client = make_client()
    rsps.get(TASK_URL, json=samples.task_answer())
    rsps.post(UPLOAD_URL, json=samples.upload_answer())
    client.get_task(samples.TASK_ID)
    client.upload_file(b"\x89PNG", file_name="a.png")
    to_api, to_files = rsps.calls[0].request.req_kwargs, rsps.calls[1].request.req_kwargs
    assert to_api["proxies"].get("https") == "http://proxy.example:3128"
    assert "https" not in to_files["proxies"]  # NO_PROXY names that host
    assert to_api["verify"] == "/etc/ssl/certs/example-bundle.pem"
    monkeypatch.delenv("HTTPS_PROXY")  # read once: this client keeps what it read
    with monkeypatch.context() as m:
        calls = []
        m.setattr(requests.sessions, "get_environ_proxies",
                  lambda *a, **k: calls.append(a) or {})
        client.get_task(samples.TASK_ID)
    assert calls == [] and rsps.calls[2].request.req_kwargs["proxies"]["https"]
    assert make_client()._environment(BASE)["proxies"].get("https") is None


def test_a_netrc_entry_never_replaces_the_api_key(rsps, monkeypatch, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.evolink.test login someone password other\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    rsps.get(TASK_URL, json=samples.task_answer())
    make_client().get_task(samples.TASK_ID)
    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"
