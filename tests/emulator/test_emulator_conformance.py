"""Conformance: the emulator's answers validate against the JSON Schemas in tests/support/schemas/
(the same schemas the client tests check their canned answers with), so the emulator and
the client cannot drift apart silently."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from jsonschema import Draft202012Validator
from PIL import Image

from django_evolink.emulator import Emulator
from tests.support.evolink_samples import load_schema

MODEL = "wan2.5-image-to-image"
AUTH = {"Authorization": "Bearer sk-evo-conformance"}


def validate(name: str, instance: dict) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def png(width: int = 512, height: int = 512, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), (10, 120, 200, 255)[: len(mode)]).save(buf, "PNG")
    return buf.getvalue()


class _Sink(ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def emu():
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    sink = _Sink(("127.0.0.1", 0), Hook)
    threading.Thread(target=sink.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()
    emulator = Emulator(manual_clock=True, allow_insecure_callbacks=True, credits=10).start()
    emulator.hook_url = f"http://127.0.0.1:{sink.server_address[1]}/hook"
    emulator.received = received
    yield emulator
    emulator.stop()
    sink.shutdown()
    sink.server_close()


def upload(emu, data: bytes, name: str = "photo.png") -> requests.Response:
    return requests.post(f"{emu.url}/api/v1/files/upload/stream", headers=AUTH,
                         files={"file": (name, data)}, data={"upload_path": "photos"})


def create(emu, **body) -> requests.Response:
    body = {"model": MODEL, "prompt": "Replace the background with a starry sky", **body}
    return requests.post(f"{emu.url}/v1/images/generations", json=body, headers=AUTH)


def test_upload_answer(emu):
    response = upload(emu, png())
    assert response.status_code == 200
    validate("upload", response.json())


def test_task_answers_through_the_lifecycle_and_callback(emu):
    image_url = upload(emu, png()).json()["data"]["file_url"]
    created = create(emu, image_urls=[image_url], n=2, callback_url=emu.hook_url)
    assert created.status_code == 200
    validate("task", created.json())
    task_id = created.json()["id"]
    seen = set()
    for step in (0, 1, 10, 10, 9):
        emu.clock.advance(step)
        answer = requests.get(f"{emu.url}/v1/tasks/{task_id}", headers=AUTH).json()
        validate("task", answer)
        seen.add(answer["status"])
    assert seen == {"pending", "processing", "completed"}
    emu.callbacks.wait_for(1)
    assert emu.received and emu.received[0]["status"] == "completed"
    validate("task", emu.received[0])


@pytest.mark.parametrize("end", ["fail_task", "cancel_task"])
def test_failed_and_cancelled_tasks(emu, end):
    image_url = upload(emu, png()).json()["data"]["file_url"]
    task_id = create(emu, image_urls=[image_url]).json()["id"]
    getattr(emu, end)(task_id)
    validate("task", requests.get(f"{emu.url}/v1/tasks/{task_id}", headers=AUTH).json())


def test_credits_answer(emu):
    validate("credits", requests.get(f"{emu.url}/v1/credits", headers=AUTH).json())


def _error_answers(emu) -> dict[str, requests.Response]:
    image_url = upload(emu, png()).json()["data"]["file_url"]
    answers = {
        "401": requests.get(f"{emu.url}/v1/credits"),
        "400 prompt": create(emu, image_urls=[image_url], prompt="x" * 2001),
        "400 n": create(emu, image_urls=[image_url], n=5),
        "400 image_urls": create(emu, image_urls=[]),
        "400 callback": create(emu, image_urls=[image_url], callback_url="ftp://x"),
        "404 model": create(emu, image_urls=[image_url], model="nope"),
        "400 task": requests.get(f"{emu.url}/v1/tasks/task-x", headers=AUTH),
        "404 task": requests.get(f"{emu.url}/v1/tasks/task-unified-1757156493-unknown0",
                                 headers=AUTH),
        "413": create(emu, image_urls=[image_url], prompt="x" * (emu.request_max_bytes + 1)),
        "404 file": requests.get(f"{emu.url}/files/results/task-x/0.png"),
    }
    emu.set_credits(1.0)
    answers["402"] = create(emu, image_urls=[image_url], n=1)
    for status in (403, 429, 500, 502, 503):
        emu.faults.add_error("credits", status, retry_after=1 if status == 429 else None)
        answers[str(status)] = requests.get(f"{emu.url}/v1/credits", headers=AUTH)
    return answers


def test_every_error_answer(emu):
    answers = _error_answers(emu)
    for label, response in answers.items():
        assert response.status_code == int(label.split()[0]), (label, response.text)
        validate("error", response.json())
    assert answers["402"].json()["error"]["fallback_suggestion"]
    assert answers["429"].headers["Retry-After"] == "1"
    # hints travel in fallback_suggestion, never in message (evolink-api.md §6)
    for label, hint in (("429", "retry after 60 seconds"), ("503", "retry after 30 seconds"),
                        ("404 model", "wan2.5-image-to-image")):
        error = answers[label].json()["error"]
        assert hint in error["fallback_suggestion"] and hint not in error["message"], label
    assert answers["500"].json()["error"]["fallback_suggestion"]
    assert answers["502"].json()["error"]["fallback_suggestion"]
    assert answers["400 task"].json()["error"]["param"] == "task_id"
    assert answers["413"].json()["error"]["type"] == "request_too_large_error"


def test_files_api_errors_have_the_files_envelope(emu):
    response = upload(emu, b"not an image")
    assert response.status_code == 400
    validate("files_error", response.json())
