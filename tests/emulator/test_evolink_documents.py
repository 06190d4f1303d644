"""The emulator against Evolink's own documents (issue 15): failed-task error codes and
their fault switches, hints in ``fallback_suggestion``, 413, the task-id rules of the
query, the files API, callbacks answered 3xx, credits and ``cancelled``."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
from http.server import BaseHTTPRequestHandler

import pytest
import requests
from PIL import Image

from django_evolink.emulator import Emulator
from django_evolink.emulator.faults import TASK_ERROR_CODES
from tests.emulator.test_emulator import (
    AUTH,
    ImageServer,
    _Files,
    create,
    credits,
    get_task,
    image_bytes,
)


@pytest.fixture
def emu():
    emulator = Emulator(manual_clock=True, allow_insecure_callbacks=True).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def images():
    server = ImageServer()
    yield server
    server.close()


@pytest.fixture
def img_url(images):
    return images.add("input.png", image_bytes())


def control(emu: Emulator, method: str, path: str, body: dict | None = None) -> requests.Response:
    return requests.request(method, f"{emu.url}/_emulator/{path}", json=body, timeout=10)


# ----------------------------------------------------------- failed-task error codes --
@pytest.mark.parametrize("code", sorted(TASK_ERROR_CODES))
def test_fail_next_fails_with_each_evolink_code(emu, img_url, code):
    emu.faults.fail_next_tasks(code=code)
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    emu.clock.advance(30)
    answer = get_task(emu, task_id).json()
    assert answer["status"] == "failed"
    assert answer["error"] == {"code": code, "message": TASK_ERROR_CODES[code]}
    assert "results" not in answer


def test_fault_switches_over_http_take_a_code_and_refuse_unknown_ones(emu, img_url):
    assert control(emu, "POST", "faults",
                   {"fail_next": {"code": "quota_exceeded", "message": "Quota gone"}}).ok
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    emu.clock.advance(30)
    assert get_task(emu, task_id).json()["error"] == {"code": "quota_exceeded",
                                                      "message": "Quota gone"}
    other = create(emu, image_urls=[img_url]).json()["id"]
    ended = control(emu, "POST", f"tasks/{other}/fail", {"code": "generation_timeout"})
    assert ended.ok and ended.json()["error"]["code"] == "generation_timeout"
    refused = control(emu, "POST", "faults", {"fail_next": {"code": "no_such_code"}})
    assert refused.status_code == 400 and "content_policy_violation" in refused.json()["error"]
    with pytest.raises(ValueError, match="unknown task error code"):
        emu.fail_task(create(emu, image_urls=[img_url]).json()["id"], code="nope")


def test_a_task_failed_without_a_code_gets_a_default_one(emu, img_url):
    emu.faults.fail_next_tasks()
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    emu.clock.advance(30)
    assert get_task(emu, task_id).json()["error"]["code"] == "generation_failed_no_content"


# ------------------------------------------------------------------------ cancelled --
def test_a_cancelled_task_says_so_in_its_query_and_its_callback(emu, img_url):
    hook = Hook()
    try:
        emu.faults.cancel_next_tasks()
        task_id = create(emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
        emu.clock.advance(30)
        answer = get_task(emu, task_id).json()
        assert answer["status"] == "cancelled"
        assert answer["error"]["code"] == "request_cancelled"
        assert answer["task_info"]["can_cancel"] is False
        emu.callbacks.wait_for(1)
        assert hook.bodies[0]["status"] == "cancelled"
        assert hook.bodies[0]["error"]["code"] == "request_cancelled"
    finally:
        hook.close()


# ---------------------------------------------------------------------- error bodies --
def test_hints_are_in_fallback_suggestion_not_in_message(emu, img_url):
    for status, hint in ((429, "retry after 60 seconds"), (503, "retry after 30 seconds")):
        emu.faults.add_error("credits", status)
        error = requests.get(f"{emu.url}/v1/credits", headers=AUTH, timeout=10).json()["error"]
        assert error["fallback_suggestion"] == hint
        assert "retry" not in error["message"]
    for status in (500, 502):
        emu.faults.add_error("credits", status)
        error = requests.get(f"{emu.url}/v1/credits", headers=AUTH, timeout=10).json()["error"]
        assert "retry" in error["fallback_suggestion"] and "retry" not in error["message"]
    error = create(emu, image_urls=[img_url], model="wan2.5-image-to-imag").json()["error"]
    assert error["code"] == 404 and error["param"] == "model"
    assert error["fallback_suggestion"] == "try the model 'wan2.5-image-to-image'"
    assert "try" not in error["message"]


def test_a_request_too_large_is_a_413(emu, img_url):
    answer = create(emu, image_urls=[img_url], prompt="x" * (emu.request_max_bytes + 1))
    assert answer.status_code == 413
    error = answer.json()["error"]
    assert error["type"] == "request_too_large_error" and error["param"] == "body"
    assert str(emu.request_max_bytes) in error["message"]
    assert len(emu.tasks) == 0
    emu.faults.add_error("create", 413)
    assert create(emu, image_urls=[img_url]).status_code == 413


# ---------------------------------------------------------------------- task query --
def test_query_malformed_id_is_400_unknown_well_formed_is_404(emu):
    for task_id in ("x", "task-x", "task-unified-abc-def", "task-unified-1757156493-"):
        answer = get_task(emu, task_id)
        assert answer.status_code == 400, task_id
        assert answer.json()["error"]["param"] == "task_id"
    answer = get_task(emu, "task-unified-1757156493-imcg5zqt")
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "not_found_error"


# ------------------------------------------------------------------------ files API --
def files(emu: Emulator, path: str) -> str:
    return f"{emu.url}/api/v1/files/{path}"


def test_upload_takes_camel_case_fields_and_generates_a_name(emu):
    camel = requests.post(files(emu, "upload/stream"), headers=AUTH, timeout=10,
                          files={"file": ("x.png", image_bytes())},
                          data={"uploadPath": "camel/case", "fileName": "mine.png"}).json()["data"]
    assert (camel["upload_path"], camel["file_name"]) == ("camel/case", "mine.png")
    first = requests.post(files(emu, "upload/stream"), headers=AUTH, timeout=10,
                          files={"file": ("same.png", image_bytes())}).json()["data"]
    second = requests.post(files(emu, "upload/stream"), headers=AUTH, timeout=10,
                           files={"file": ("same.png", image_bytes())}).json()["data"]
    assert first["file_name"] != second["file_name"]
    assert first["file_name"] == f"{first['file_id']}.png"
    assert first["original_name"] == "same.png"


def test_upload_size_limit_and_error_envelope():
    with Emulator(manual_clock=True, upload_max_bytes=2000) as emu:
        noise = io.BytesIO()
        Image.frombytes("RGB", (100, 100), os.urandom(30000)).save(noise, "PNG")
        answer = requests.post(files(emu, "upload/stream"), headers=AUTH, timeout=10,
                               files={"file": ("big.png", noise.getvalue())})
        assert answer.status_code == 413
        body = answer.json()
        assert body["success"] is False and body["code"] == 413
        assert "2000" in body["msg"]


def test_upload_base64_and_url(emu, images):
    data = image_bytes(fmt="JPEG")
    plain = requests.post(files(emu, "upload/base64"), headers=AUTH, timeout=10, json={
        "base64_data": base64.b64encode(data).decode(), "file_name": "b.jpg"}).json()
    assert plain["success"] is True and plain["data"]["mime_type"] == "image/jpeg"
    assert requests.get(plain["data"]["file_url"], timeout=10).content == data
    data_url = requests.post(files(emu, "upload/base64"), headers=AUTH, timeout=10, json={
        "base64Data": "data:image/jpeg;base64," + base64.b64encode(data).decode(),
        "uploadPath": "b64"}).json()["data"]
    assert data_url["upload_path"] == "b64" and data_url["file_name"].endswith(".jpg")
    bad = requests.post(files(emu, "upload/base64"), headers=AUTH, timeout=10,
                        json={"base64_data": "!!!"})
    assert bad.status_code == 400 and bad.json()["success"] is False
    source = images.add("remote.png", image_bytes())
    by_url = requests.post(files(emu, "upload/url"), headers=AUTH, timeout=10,
                           json={"fileUrl": source}).json()["data"]
    assert by_url["original_name"] == "remote.png" and by_url["mime_type"] == "image/png"
    missing = requests.post(files(emu, "upload/url"), headers=AUTH, timeout=10,
                            json={"file_url": images.base + "/nothing.png"})
    assert missing.status_code == 400 and "HTTP 404" in missing.json()["msg"]


def test_list_quota_and_delete():
    with Emulator(manual_clock=True, upload_quota=3) as emu:
        ids = [requests.post(files(emu, "upload/stream"), headers=AUTH, timeout=10,
                             files={"file": (f"{i}.png", image_bytes())}).json()["data"]["file_id"]
               for i in range(3)]
        page = requests.get(files(emu, "list?page=1&pageSize=2"), headers=AUTH,
                            timeout=10).json()["data"]
        assert page["total"] == 3 and len(page["files"]) == 2 and page["page_size"] == 2
        quota = requests.get(files(emu, "quota"), headers=AUTH, timeout=10).json()["data"]
        assert quota == {"used_files": 3, "max_files": 3, "remaining_files": 0}
        full = requests.post(files(emu, "upload/stream"), headers=AUTH, timeout=10,
                             files={"file": ("4.png", image_bytes())})
        assert full.status_code == 403 and "at most 3 files" in full.json()["msg"]
        deleted = requests.delete(files(emu, ids[0]), headers=AUTH, timeout=10)
        assert deleted.json() == {"success": True, "code": 200, "msg": "File deleted successfully",
                                  "data": {"file_id": ids[0]}}
        again = requests.delete(files(emu, ids[0]), headers=AUTH, timeout=10)
        assert again.status_code == 404 and again.json()["success"] is False
        bad_page = requests.get(files(emu, "list?page=0"), headers=AUTH, timeout=10)
        assert bad_page.status_code == 400 and "page" in bad_page.json()["msg"]


# ------------------------------------------------------------------------ callbacks --
class Hook:
    """A callback receiver answering ``status`` (with ``Location`` when 3xx); counts the
    requests that reach ``/elsewhere`` (a followed redirect)."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict] = []
        self.followed = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path == "/elsewhere":
                    hook.followed += 1
                    self.send_response(200)
                else:
                    hook.bodies.append(json.loads(raw))
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", hook.base + "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = _answer  # noqa: N815
            do_GET = _answer  # noqa: N815

        self.server = _Files(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.base + "/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_success_and_is_retried_never_followed(emu, img_url, status):
    hook = Hook(status)
    try:
        task_id = create(emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
        emu.clock.advance(30)
        emu.callbacks.wait_for(1)
        for delay in (1, 2, 4):
            emu.clock.advance(delay)
            emu.wait_idle()
        attempts = emu.callbacks.filter(task_id)
        assert [a.attempt for a in attempts] == [1, 2, 3, 4]
        assert all(a.http_status == status and not a.ok for a in attempts)
        assert hook.followed == 0 and len(hook.bodies) == 4
    finally:
        hook.close()


# -------------------------------------------------------------------------- credits --
def test_credits_keep_four_decimals_and_distinct_user_and_token_balances(img_url):
    with Emulator(manual_clock=True, credits=100.5, token_credits=50.25,
                  price_per_image=1.23456) as emu:
        task_id = create(emu, image_urls=[img_url], n=1).json()["id"]
        assert get_task(emu, task_id).json()["usage"]["credits_reserved"] == 1.2346
        emu.clock.advance(30)
        data = credits(emu)["data"]
        assert data["user"] == {"remaining_credits": 99.2654, "used_credits": 1.2346}
        assert data["token"] == {"remaining_credits": 49.0154, "unlimited_credits": False,
                                 "used_credits": 1.2346}
        # the key's own balance runs out before the account's
        emu.set_credits(80.0, token=1.0)
        refused = create(emu, image_urls=[img_url], n=1)
        assert refused.status_code == 402
        assert "API key" in refused.json()["error"]["message"]
        assert refused.json()["error"]["fallback_suggestion"].startswith("https://")
        # a key without a limit of its own shows the account's balance, unlimited
        assert control(emu, "POST", "credits", {"token_credits": None}).ok
        token = credits(emu)["data"]["token"]
        assert token["unlimited_credits"] is True and token["remaining_credits"] == 80.0
