"""Conformance: the same request/response cases, recorded from Evolink's documents
(``tests/fixtures/evolink/*.json``, each naming its source in /work/shared), run twice:

* against the recorded answer, served with ``responses``;
* against the emulator, arranged so that it should give that answer.

Both runs go through our :class:`EvolinkClient` and parsers; the test checks that the
client treats both answers identically (same parsed update, credits, upload data or same
typed error), and that the emulator's answer has the recorded shape field by field
(every key, every JSON type, nested).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from PIL import Image

from django_evolink.core.credits import parse_credits
from django_evolink.emulator import Emulator
from django_evolink.evolink.client import EvolinkClient
from django_evolink.evolink.payloads import parse_payload
from django_evolink.exceptions import EvolinkAPIError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "evolink"
API_KEY = "sk-evo-conformance"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
EVOLINK = "https://api.evolink.ai"
FILES = "https://files-api.evolink.ai"
#: The recorded input image URL (the seed's example), replaced by a live one on the emulator.
DOC_IMAGE_URL = "https://example.com/image1.png"


def load_cases() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(FIXTURES.glob("*.json"))]


CASES = load_cases()


def png(width: int = 512, height: int = 512) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------- shapes --
def shape(value: Any) -> Any:
    """The JSON type structure of ``value``: objects by key, lists by their first item."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def shape_differences(got: Any, want: Any, path: str = "$") -> list[str]:
    """Every place where ``got`` (the emulator's) differs in shape from ``want``."""
    if isinstance(want, dict) and isinstance(got, dict):
        found = [f"{path}.{key}: missing" for key in want if key not in got]
        found += [f"{path}.{key}: not in the recorded answer" for key in got if key not in want]
        for key in want.keys() & got.keys():
            found += shape_differences(got[key], want[key], f"{path}.{key}")
        return found
    if isinstance(want, list) and isinstance(got, list):
        if want and got:
            return shape_differences(got[0], want[0], f"{path}[0]")
        return [] if bool(want) == bool(got) else [f"{path}: one list is empty"]
    return [] if got == want else [f"{path}: {got} instead of {want}"]


# ------------------------------------------------------------------ the calls --
def client_for(base: str, files: str) -> EvolinkClient:
    client = EvolinkClient(api_key=API_KEY, base_url=base, files_base_url=files, max_retries=0,
                           sleep=lambda seconds: None, pool_size=2)
    return client


def call(client: EvolinkClient, request: dict[str, Any]) -> tuple[str, Any]:
    """Send ``request`` with our client; ("ok", parsed) or ("error", the typed error)."""
    method, path = request["method"], request["path"]
    try:
        if method == "POST" and path == "/v1/images/generations":
            body = dict(request["json"])
            answer = client.create_image_task(
                model=body.pop("model"), prompt=body.pop("prompt"),
                image_urls=body.pop("image_urls"), n=body.pop("n", None), params=body)
            return "ok", normalised_update(answer)
        if method == "GET" and path.startswith("/v1/tasks/"):
            return "ok", normalised_update(client.get_task(path.rsplit("/", 1)[1]))
        if method == "GET" and path == "/v1/credits":
            balance = parse_credits(client.get_credits())
            assert balance is not None
            return "ok", {name: (type(value).__name__) for name, value
                          in dataclasses.asdict(balance).items()} | {
                              "key_unlimited": balance.key_unlimited}
        if method == "POST" and path == "/api/v1/files/upload/stream":
            data = client.upload_file(png(), **request["form"])
            return "ok", {"keys": sorted(data), "file_name": data["file_name"],
                          "upload_path": data["upload_path"], "mime_type": data["mime_type"]}
    except EvolinkAPIError as exc:
        return "error", {
            "class": type(exc).__name__, "status": exc.status, "type": exc.type,
            "param": exc.param, "has_suggestion": exc.fallback_suggestion is not None,
            "retryable": exc.retryable,
        }
    raise AssertionError(f"no client call for {method} {path}")


def normalised_update(answer: dict[str, Any]) -> dict[str, Any]:
    """What our parser makes of a task answer, without the values that differ by nature
    (ids, URLs, timestamps): each field's presence, and the status and error code."""
    update = parse_payload(answer)
    fields = {name: value is not None for name, value in dataclasses.asdict(update).items()}
    return {**fields, "status": update.status, "error_code": update.error_code,
            "results": len(update.results or []), "billing_rule": update.billing_rule,
            "user_group": update.user_group}


# --------------------------------------------------------------- arrangements --
def _create(emu: Emulator, image_url: str, **extra: Any) -> str:
    body = {"model": "wan2.5-image-to-image", "prompt": "p", "image_urls": [image_url], **extra}
    answer = requests.post(f"{emu.url}/v1/images/generations", json=body, headers=AUTH,
                           timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def _task_path(task_id: str) -> dict[str, Any]:
    return {"path": f"/v1/tasks/{task_id}"}


def _completed(emu: Emulator, image_url: str) -> dict[str, Any]:
    task_id = _create(emu, image_url)
    emu.clock.advance(30)
    return _task_path(task_id)


def _failed(emu: Emulator, image_url: str) -> dict[str, Any]:
    emu.faults.fail_next_tasks(code="content_policy_violation")
    return _completed(emu, image_url)


def _failed_input(emu: Emulator, image_url: str) -> dict[str, Any]:
    task_id = _create(emu, "http://127.0.0.1:1/missing.png")
    emu.clock.advance(2)
    return _task_path(task_id)


def _cancelled(emu: Emulator, image_url: str) -> dict[str, Any]:
    task_id = _create(emu, image_url)
    emu.cancel_task(task_id)
    return _task_path(task_id)


def _credits(emu: Emulator, image_url: str) -> dict[str, Any]:
    emu.set_credits(1095.39, token=99416.44)
    return {}


def _no_credits(emu: Emulator, image_url: str) -> dict[str, Any]:
    emu.set_credits(0)
    return {}


def _error(status: int) -> Callable[[Emulator, str], dict[str, Any]]:
    def arrange(emu: Emulator, image_url: str) -> dict[str, Any]:
        emu.faults.add_error("credits", status)
        return {}
    return arrange


def _too_large(emu: Emulator, image_url: str) -> dict[str, Any]:
    return {"prompt": "x" * (emu.request_max_bytes + 1)}


#: How to bring the emulator to each recorded case; returns changes to the request
#: (``path``, or ``prompt`` of a create).
ARRANGE: dict[str, Callable[[Emulator, str], dict[str, Any]]] = {
    "create_task": lambda emu, url: {},
    "query_completed": _completed,
    "query_failed_content_policy": _failed,
    "query_failed_input_image": _failed_input,
    "query_cancelled": _cancelled,
    "query_malformed_id": lambda emu, url: {},
    "query_unknown": lambda emu, url: {},
    "credits": _credits,
    "upload_stream": lambda emu, url: {},
    "error_unknown_model": lambda emu, url: {},
    "error_insufficient_quota": _no_credits,
    "error_rate_limit": _error(429),
    "error_service_unavailable": _error(503),
    "error_request_too_large": _too_large,
}

#: Fields whose recorded value the emulator must give exactly (not only its type).
SAME_VALUES = {
    "error_unknown_model": ["fallback_suggestion", "param"],
    "error_rate_limit": ["fallback_suggestion"],
    "error_service_unavailable": ["fallback_suggestion"],
    "error_insufficient_quota": ["fallback_suggestion"],
    "query_malformed_id": ["param"],
    "error_request_too_large": ["type", "param"],
}


def test_every_fixture_has_an_arrangement_and_a_source():
    assert {case["name"] for case in CASES} == set(ARRANGE)
    for case in CASES:
        assert case["source"] and case["request"] and case["response"]["status"]


@pytest.fixture(scope="module")
def emulator():
    with Emulator(manual_clock=True, credits=1000) as emu:
        yield emu


def _recorded(case: dict[str, Any]) -> tuple[tuple[str, Any], Any]:
    request, answer = case["request"], case["response"]
    base = FILES if request["path"].startswith("/api/v1/files/") else EVOLINK
    captured: list[requests.Response] = []
    client = client_for(EVOLINK, FILES)
    client.session.hooks["response"].append(lambda r, *args, **kwargs: captured.append(r))
    with responses.RequestsMock() as mock:
        mock.add(request["method"], base + request["path"], json=answer["json"],
                 status=answer["status"])
        result = call(client, request)
    return result, captured[-1].json()


def _emulated(case: dict[str, Any], emu: Emulator) -> tuple[tuple[str, Any], Any, int]:
    emu.reset()
    image_url = requests.post(f"{emu.url}/api/v1/files/upload/stream", headers=AUTH,
                              files={"file": ("in.png", png())}, timeout=10).json()["data"][
                                  "file_url"]
    request = json.loads(json.dumps(case["request"]))
    changes = ARRANGE[case["name"]](emu, image_url)
    if "path" in changes:
        request["path"] = changes["path"]
    if "json" in request:
        request["json"]["image_urls"] = [image_url if url == DOC_IMAGE_URL else url
                                         for url in request["json"]["image_urls"]]
        if "prompt" in changes:
            request["json"]["prompt"] = changes["prompt"]
    captured: list[requests.Response] = []
    client = client_for(emu.url, emu.url)
    client.session.hooks["response"].append(lambda r, *args, **kwargs: captured.append(r))
    result = call(client, request)
    return result, captured[-1].json(), captured[-1].status_code


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_client_reads_the_emulator_as_it_reads_the_recorded_answer(case, emulator):
    recorded, recorded_body = _recorded(case)
    emulated, emulated_body, status = _emulated(case, emulator)
    assert status == case["response"]["status"], emulated_body
    assert recorded_body == case["response"]["json"]
    assert emulated == recorded


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_the_emulator_answers_in_the_recorded_shape(case, emulator):
    _, emulated_body, _ = _emulated(case, emulator)
    recorded_body = case["response"]["json"]
    assert shape_differences(shape(emulated_body), shape(recorded_body)) == []
    error, recorded_error = emulated_body.get("error"), recorded_body.get("error")
    for name in SAME_VALUES.get(case["name"], []):
        assert error[name] == recorded_error[name], name


def test_shape_differences_name_each_place():
    found = shape_differences(shape({"a": 1, "b": {"c": "x"}, "d": [1], "f": True}),
                              shape({"a": 1.5, "b": {"c": 2}, "e": None, "d": [], "f": 1}))
    assert sorted(found) == ["$.b.c: string instead of number", "$.d: one list is empty",
                             "$.e: missing", "$.f: boolean instead of number"]
