"""Tests of the Evolink emulator (django_evolink.emulator): endpoints, validation rules,
lifecycle, callbacks, credits, fault switches, control API, command line and fixture.

Only loopback HTTP is used. Most tests run on a manual clock, so they are deterministic.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from django_evolink.emulator import Emulator, is_internal_host
from django_evolink.emulator.handlers import _safe_segment

MODEL = "wan2.5-image-to-image"
AUTH = {"Authorization": "Bearer sk-evo-test-0123"}


# ----------------------------------------------------------------------------- helpers --
def image_bytes(width: int = 512, height: int = 512, fmt: str = "PNG", mode: str = "RGB",
                color=(200, 80, 40), **save) -> bytes:
    """A real image as bytes."""
    if mode in ("RGBA", "LA") and isinstance(color, tuple):
        color = (*color[: len(mode) - 1], 128)
    elif mode in ("L", "P") and isinstance(color, tuple):
        color = 100
    buf = io.BytesIO()
    Image.new(mode, (width, height), color).save(buf, format=fmt, **save)
    return buf.getvalue()


class _Files(ThreadingHTTPServer):
    daemon_threads = True


class ImageServer:
    """A tiny local HTTP server for input images: ``url = server.add("a.png", data)``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        files = self.files

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                data = files.get(self.path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = _Files(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, name: str, data: bytes) -> str:
        self.files["/" + name] = data
        return self.base + "/" + name

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Receiver:
    """A callback receiver answering a scripted list of statuses (then 200)."""

    def __init__(self, statuses=(), sleep: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.sleep = sleep
        self.received: list[tuple[float, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((time.monotonic(), body))
                if receiver.sleep:
                    time.sleep(receiver.sleep)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = _Files(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def images():
    server = ImageServer()
    yield server
    server.close()


@pytest.fixture
def receiver():
    made = []

    def make(statuses=(), sleep=0.0):
        made.append(Receiver(statuses, sleep))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def emu():
    """A started emulator on a manual clock (time moves only on advance())."""
    emulator = Emulator(manual_clock=True).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def cb_emu():
    """A manual-clock emulator that accepts http://127.0.0.1 callbacks."""
    emulator = Emulator(manual_clock=True, allow_insecure_callbacks=True).start()
    yield emulator
    emulator.stop()


def create(emulator: Emulator, timeout: float = 10, headers=AUTH, **body) -> requests.Response:
    body.setdefault("model", MODEL)
    body.setdefault("prompt", "Replace the background with a starry sky")
    return requests.post(f"{emulator.url}/v1/images/generations", json=body, headers=headers,
                         timeout=timeout)


def get_task(emulator: Emulator, task_id: str) -> requests.Response:
    return requests.get(f"{emulator.url}/v1/tasks/{task_id}", headers=AUTH, timeout=10)


def credits(emulator: Emulator) -> dict:
    return requests.get(f"{emulator.url}/v1/credits", headers=AUTH, timeout=10).json()


def assert_error(response: requests.Response, status: int, error_type: str,
                 param: str | None = None, contains: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status
    assert error["type"] == error_type
    assert error["message"]
    if param is not None:
        assert error.get("param") == param
    if contains is not None:
        assert contains in error["message"], error["message"]
    return error


@pytest.fixture
def img_url(images):
    return images.add("input.png", image_bytes())


# ------------------------------------------------------------------------ endpoints --
def test_create_answers_a_pending_task(emu, img_url):
    response = create(emu, image_urls=[img_url], n=2)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pending" and body["progress"] == 0
    assert body["object"] == "image.generation.task" and body["type"] == "image"
    assert body["model"] == MODEL
    assert body["id"].startswith(f"task-unified-{body['created']}-")
    assert body["task_info"] == {"can_cancel": True, "estimated_time": 30}
    assert body["usage"] == {"billing_rule": "per_call", "credits_reserved": 2.4,
                             "user_group": "default"}
    assert "results" not in body
    assert emu.tasks[body["id"]].n == 2


def test_get_task_and_unknown_task(emu, img_url):
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    assert get_task(emu, task_id).json()["id"] == task_id
    assert_error(get_task(emu, "task-unified-0-nope"), 404, "not_found_error")


def test_credits_shape(emu):
    assert credits(emu) == {
        "success": True, "message": "",
        "data": {"token": {"remaining_credits": 1000.0, "unlimited_credits": True,
                           "used_credits": 0.0},
                 "user": {"remaining_credits": 1000.0, "used_credits": 0.0}},
    }


def test_unknown_endpoint_is_404(emu):
    assert_error(requests.get(f"{emu.url}/v2/nothing", headers=AUTH), 404, "not_found_error")


def test_invalid_json_body(emu):
    response = requests.post(f"{emu.url}/v1/images/generations", data=b"{nope",
                             headers={**AUTH, "Content-Type": "application/json"})
    assert_error(response, 400, "invalid_request_error")


# ----------------------------------------------------------------------- validation --
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": "Basic sk-evo-x"},
                                     {"Authorization": "Bearer "}])
def test_bad_key_is_401(emu, img_url, headers):
    for response in (create(emu, headers=headers, image_urls=[img_url]),
                     requests.get(f"{emu.url}/v1/credits", headers=headers),
                     requests.get(f"{emu.url}/v1/tasks/x", headers=headers)):
        error = assert_error(response, 401, "authentication_error")
        assert "sk-evo-x" not in error["message"]
    assert len(emu.tasks) == 0


def test_explicit_api_keys(img_url):
    with Emulator(api_keys=["sk-evo-good"], manual_clock=True) as emu:
        assert create(emu, headers={"Authorization": "Bearer sk-evo-good"},
                      image_urls=[img_url]).status_code == 200
        assert_error(create(emu, headers={"Authorization": "Bearer sk-evo-other"},
                            image_urls=[img_url]), 401, "authentication_error")


def test_model(emu, img_url):
    assert_error(create(emu, model="gpt-image-1", image_urls=[img_url]), 404,
                 "not_found_error", "model", "gpt-image-1")
    body = {"prompt": "x", "image_urls": [img_url]}
    response = requests.post(f"{emu.url}/v1/images/generations", json=body, headers=AUTH)
    assert_error(response, 400, "invalid_request_error", "model")


@pytest.mark.parametrize("prompt,ok", [("a" * 2000, True), ("a" * 2001, False), ("", False),
                                       ("   ", False), (42, False), ("あ" * 2000, True)])
def test_prompt(emu, img_url, prompt, ok):
    response = create(emu, prompt=prompt, image_urls=[img_url])
    if ok:
        assert response.status_code == 200
    else:
        assert_error(response, 400, "invalid_request_error", "prompt")


def test_prompt_required(emu, img_url):
    body = {"model": MODEL, "image_urls": [img_url]}
    response = requests.post(f"{emu.url}/v1/images/generations", json=body, headers=AUTH)
    assert_error(response, 400, "invalid_request_error", "prompt", "required")


@pytest.mark.parametrize("n,ok", [(0, False), (1, True), (4, True), (5, False), ("2", False),
                                  (True, False), (2.5, False)])
def test_n(emu, img_url, n, ok):
    response = create(emu, n=n, image_urls=[img_url])
    if ok:
        assert response.status_code == 200
        assert response.json()["usage"]["credits_reserved"] == pytest.approx(1.2 * n)
    else:
        assert_error(response, 400, "invalid_request_error", "n")


@pytest.mark.parametrize("count,ok", [(0, False), (1, True), (2, True), (3, False)])
def test_image_url_count(emu, img_url, count, ok):
    response = create(emu, image_urls=[img_url] * count)
    if ok:
        assert response.status_code == 200
    else:
        assert_error(response, 400, "invalid_request_error", "image_urls", "1 or 2")


@pytest.mark.parametrize("urls,param", [
    (None, "image_urls"), ("http://x/a.png", "image_urls"), (["ftp://x/a.png"], "image_urls[0]"),
    ([42], "image_urls[0]"), (["not a url"], "image_urls[0]"),
])
def test_image_urls_shape(emu, img_url, urls, param):
    body = {"model": MODEL, "prompt": "p"}
    if urls is not None:
        body["image_urls"] = urls
    response = requests.post(f"{emu.url}/v1/images/generations", json=body, headers=AUTH)
    assert_error(response, 400, "invalid_request_error", param)


def assert_input_failure(emulator: Emulator, response: requests.Response,
                         contains: str | None = None) -> dict:
    """The create was accepted (Evolink fetches the inputs afterwards) and the task then
    failed with ``image_processing_error`` (evolink-api.md §7); its ``error``."""
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    emulator.clock.advance(2)
    answer = get_task(emulator, response.json()["id"]).json()
    assert answer["status"] == "failed", answer
    error = answer["error"]
    assert error["code"] == "image_processing_error"
    if contains is not None:
        assert contains in error["message"], error["message"]
    return error


def assert_files_error(response: requests.Response, status: int,
                       contains: str | None = None) -> dict:
    """A files API refusal: ``{"success": false, "code": status, "msg": ...}``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == status and body["msg"]
    if contains is not None:
        assert contains in body["msg"], body["msg"]
    return body


def test_second_image_is_named(emu, images, img_url):
    bad = images.add("gif.gif", image_bytes(fmt="GIF", mode="P"))
    error = assert_input_failure(emu, create(emu, image_urls=[img_url, bad]), "image_urls[1]")
    assert "gif" in error["message"]


@pytest.mark.parametrize("size,ok,rule", [
    ((384, 384), True, None), ((5000, 384), True, None), ((384, 5000), True, None),
    ((383, 384), False, "width 383"), ((384, 383), False, "height 383"),
    ((5001, 384), False, "width 5001"), ((384, 5001), False, "height 5001"),
])
def test_image_dimensions(emu, images, size, ok, rule):
    url = images.add("dim.jpg", image_bytes(*size, fmt="JPEG", mode="L"))
    response = create(emu, image_urls=[url])
    if ok:
        assert response.status_code == 200
    else:
        error = assert_input_failure(emu, response, rule)
        assert "[384, 5000]" in error["message"]


@pytest.mark.parametrize("fmt,mode,ok", [
    ("JPEG", "RGB", True), ("PNG", "RGB", True), ("PNG", "L", True), ("BMP", "RGB", True),
    ("WEBP", "RGB", True), ("GIF", "P", False), ("TIFF", "RGB", False),
])
def test_image_formats_by_content(emu, images, fmt, mode, ok):
    # the URL's extension lies: the content decides
    url = images.add("image.png", image_bytes(fmt=fmt, mode=mode))
    response = create(emu, image_urls=[url])
    if ok:
        assert response.status_code == 200, response.text
    else:
        assert_input_failure(emu, response, "format")


def test_png_with_alpha_or_transparency_is_refused(emu, images):
    rgba = images.add("a.png", image_bytes(mode="RGBA"))
    assert_input_failure(emu, create(emu, image_urls=[rgba]), "transparency")
    palette = io.BytesIO()
    Image.new("P", (400, 400), 3).save(palette, format="PNG", transparency=3)
    url = images.add("p.png", palette.getvalue())
    assert_input_failure(emu, create(emu, image_urls=[url]), "transparency")
    # webp with alpha is not a png: accepted
    webp = images.add("a.webp", image_bytes(mode="RGBA", fmt="WEBP"))
    assert create(emu, image_urls=[webp]).status_code == 200


def _png_of_size(total: int) -> bytes:
    """A valid 400x400 PNG padded with a private ancillary chunk to exactly ``total`` bytes."""
    from PIL import PngImagePlugin

    base = image_bytes(400, 400)
    info = PngImagePlugin.PngInfo()
    info.add(b"prVt", b"\0" * (total - len(base) - 12))
    buf = io.BytesIO()
    Image.open(io.BytesIO(base)).save(buf, format="PNG", pnginfo=info)
    data = buf.getvalue()
    assert len(data) == total
    return data


def test_ten_megabytes_boundary(emu, images):
    limit = 10 * 1024 * 1024
    ok = images.add("ok.png", _png_of_size(limit))
    big = images.add("big.png", _png_of_size(limit + 1))
    assert create(emu, image_urls=[ok]).status_code == 200
    assert_input_failure(emu, create(emu, image_urls=[big]), "10 MB")


def test_undownloadable_and_not_an_image(emu, images):
    assert_input_failure(emu, create(emu, image_urls=[images.base + "/missing.png"]),
                         "HTTP 404")
    text = images.add("t.png", b"hello, not an image")
    assert_input_failure(emu, create(emu, image_urls=[text]), "not a readable image")
    assert_input_failure(emu, create(emu, image_urls=["http://127.0.0.1:1/x.png"]),
                         "could not be downloaded")
    # nothing is charged for a task that failed on its inputs
    assert credits(emu)["data"]["user"]["remaining_credits"] == 1000.0


def test_private_image_urls_can_be_refused(img_url):
    with Emulator(manual_clock=True, allow_private_urls=False) as emu:
        assert_error(create(emu, image_urls=[img_url]), 400, "invalid_request_error",
                     "image_urls[0]", "internal address")


@pytest.mark.parametrize("url,ok", [
    ("https://example.com/hook", True),
    ("http://example.com/hook", False),
    ("https://127.0.0.1/hook", False),
    ("https://localhost/hook", False),
    ("https://10.1.2.3/hook", False),
    ("https://172.16.0.1/hook", False),
    ("https://172.31.255.255/hook", False),
    ("https://172.32.0.1/hook", True),
    ("https://192.168.1.1/hook", False),
    ("https://169.254.169.254/latest", False),
    ("https://[::1]/hook", False),
    ("https://0.0.0.0/hook", False),
    ("https://2130706433/hook", False),
    ("https://example.com/" + "a" * (2048 - len("https://example.com/")), True),
    ("https://example.com/" + "a" * (2049 - len("https://example.com/")), False),
    ("ftp://example.com/hook", False),
])
def test_callback_url_rules(emu, img_url, url, ok):
    response = create(emu, image_urls=[img_url], callback_url=url)
    if ok:
        assert response.status_code == 200
    else:
        assert_error(response, 400, "invalid_request_error", "callback_url")


def test_insecure_callbacks_switch(cb_emu, img_url):
    response = create(cb_emu, image_urls=[img_url], callback_url="http://127.0.0.1:9/hook")
    assert response.status_code == 200
    long = "http://127.0.0.1/" + "a" * 2048
    assert_error(create(cb_emu, image_urls=[img_url], callback_url=long), 400,
                 "invalid_request_error", "callback_url")


def test_is_internal_host():
    assert is_internal_host("127.0.0.1") and is_internal_host("::ffff:10.0.0.1")
    assert is_internal_host("app.localhost") and is_internal_host("fe80::1")
    assert not is_internal_host("8.8.8.8") and not is_internal_host("example.com")


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1",
                                  "100.64.0.1", "[fe80::1%25eth0]"])
def test_loopback_image_urls_in_any_form_are_refused(host):
    # the emulator's own check once missed hex, octal and short IPv4 forms and 100.64/10
    with Emulator(manual_clock=True, allow_private_urls=False) as emu:
        assert_error(create(emu, image_urls=[f"http://{host}/x.png"]), 400,
                     "invalid_request_error", "image_urls[0]", "internal address")
        assert emu.tasks.last is None


# ------------------------------------------------------------------------ lifecycle --
def test_lifecycle_on_manual_clock(emu, img_url):
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    emu.clock.advance(1)
    assert get_task(emu, task_id).json()["status"] == "pending"
    progress = []
    for _ in range(5):
        emu.clock.advance(5)
        body = get_task(emu, task_id).json()
        assert body["status"] == "processing" and "results" not in body
        assert body["task_info"]["can_cancel"] is True
        progress.append(body["progress"])
    assert progress == sorted(progress) and 0 < progress[0] < progress[-1] < 100
    emu.clock.advance(3.99)
    assert get_task(emu, task_id).json()["status"] == "processing"
    emu.clock.advance(0.01)  # exactly estimated_time (30 s) after creation
    body = get_task(emu, task_id).json()
    assert body["status"] == "completed" and body["progress"] == 100
    assert body["task_info"]["can_cancel"] is False
    assert body["results"] == [f"{emu.url}/files/results/{task_id}/0.png"]


def test_task_duration_sets_estimated_time(img_url):
    with Emulator(manual_clock=True, task_duration=90) as emu:
        body = create(emu, image_urls=[img_url]).json()
        assert body["task_info"]["estimated_time"] == 90
        emu.clock.advance(89)
        assert get_task(emu, body["id"]).json()["status"] == "processing"
        emu.clock.advance(1)
        assert get_task(emu, body["id"]).json()["status"] == "completed"


def test_speed_factor_runs_tasks_in_real_time(img_url):
    with Emulator(speed=100) as emu:  # 30 emulated s = 0.3 real s
        task_id = create(emu, image_urls=[img_url]).json()["id"]
        emu.wait_for_task(task_id, "completed", timeout=5)
        assert get_task(emu, task_id).json()["status"] == "completed"
        emu.clock.set_speed(1)
        assert emu.clock.speed == 1


def test_results_are_real_distinct_images_derived_from_inputs(emu, images):
    red = images.add("red.png", image_bytes(600, 400, color=(255, 0, 0)))
    blue = images.add("blue.jpg", image_bytes(600, 400, fmt="JPEG", color=(0, 0, 255)))
    body = create(emu, image_urls=[red, blue], n=4, prompt="a starry sky").json()
    emu.clock.advance(30)
    results = get_task(emu, body["id"]).json()["results"]
    assert len(results) == 4
    blobs = []
    for url in results:
        response = requests.get(url)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "image/png"
        blobs.append(response.content)
    assert len(set(blobs)) == 4
    first = Image.open(io.BytesIO(blobs[0])).convert("RGB")
    assert first.size == (1024, 1024)
    r, g, b = first.getpixel((100, 500))  # left half comes from the red input
    assert r > 200 and b < 60
    r, g, b = first.getpixel((900, 500))  # right half from the blue one
    assert b > 200 and r < 60
    mirrored = Image.open(io.BytesIO(blobs[1])).convert("RGB")
    assert mirrored.getpixel((100, 500))[2] > 200  # mirrored: blue on the left
    assert requests.get(f"{emu.url}/files/results/{body['id']}/4.png").status_code == 404


def test_results_not_served_before_completion(emu, img_url):
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    response = requests.get(f"{emu.url}/files/results/{task_id}/0.png")
    assert_error(response, 404, "not_found_error")


def test_results_expire_after_ttl(img_url):
    with Emulator(manual_clock=True, result_ttl=3600) as emu:
        task_id = create(emu, image_urls=[img_url]).json()["id"]
        emu.clock.advance(30)
        url = get_task(emu, task_id).json()["results"][0]
        assert requests.get(url).status_code == 200
        emu.clock.advance(3599)
        assert requests.get(url).status_code == 200
        emu.clock.advance(1)
        assert_error(requests.get(url), 404, "not_found_error", contains="expired")


def test_default_result_ttl_is_24_hours(emu, img_url):
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    emu.clock.advance(30 + 86400 - 1)
    url = get_task(emu, task_id).json()["results"][0]
    assert requests.get(url).status_code == 200
    emu.clock.advance(1)
    assert requests.get(url).status_code == 404


# -------------------------------------------------------------------------- credits --
def test_credits_reserved_then_charged(emu, img_url):
    task_id = create(emu, image_urls=[img_url], n=3).json()["id"]
    data = credits(emu)["data"]
    assert data["user"]["remaining_credits"] == pytest.approx(996.4)
    assert data["user"]["used_credits"] == 0
    emu.clock.advance(30)
    get_task(emu, task_id)
    data = credits(emu)["data"]
    assert data["token"]["remaining_credits"] == pytest.approx(996.4)
    assert data["token"]["used_credits"] == pytest.approx(3.6)
    assert emu.tasks[task_id].credits_charged == pytest.approx(3.6)


def test_failed_task_is_not_charged(emu, img_url):
    task_id = create(emu, image_urls=[img_url], n=2).json()["id"]
    emu.fail_task(task_id, "boom")
    assert credits(emu)["data"]["user"] == {"remaining_credits": 1000.0, "used_credits": 0.0}
    assert get_task(emu, task_id).json()["status"] == "failed"


def test_insufficient_credits_is_402(img_url):
    with Emulator(manual_clock=True, credits=3.0) as emu:
        assert create(emu, image_urls=[img_url], n=2).status_code == 200  # 2.4 reserved
        error = assert_error(create(emu, image_urls=[img_url], n=1), 402,
                             "insufficient_quota_error")
        assert error["fallback_suggestion"].startswith("https://")
        assert len(emu.tasks) == 1
        emu.set_credits(100)
        assert create(emu, image_urls=[img_url], n=4).status_code == 200


# ---------------------------------------------------------------------------- files --
def test_upload_and_download(emu):
    data = image_bytes(fmt="JPEG")
    response = requests.post(
        f"{emu.url}/api/v1/files/upload/stream", headers=AUTH,
        files={"file": ("photo.jpg", data, "image/jpeg")},
        data={"upload_path": "photos", "file_name": "renamed.jpg"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["code"] == 200
    assert body["msg"] == "File uploaded successfully"
    info = body["data"]
    assert info["file_name"] == "renamed.jpg" and info["original_name"] == "photo.jpg"
    assert info["file_size"] == len(data) and info["mime_type"] == "image/jpeg"
    assert info["upload_path"] == "photos" and info["file_id"].startswith("file_")
    assert info["file_url"] == f"{emu.url}/files/photos/renamed.jpg"
    assert info["download_url"] == f"{emu.url}/api/v1/files/download/{info['file_id']}"
    assert info["upload_time"].endswith("+08:00")
    assert requests.get(info["file_url"]).content == data
    assert requests.get(info["download_url"]).content == data
    # the uploaded URL is usable as an input image
    assert create(emu, image_urls=[info["file_url"]]).status_code == 200
    emu.clock.advance(72 * 3600)
    assert_error(requests.get(info["file_url"]), 404, "not_found_error")


def test_upload_rules(emu):
    url = f"{emu.url}/api/v1/files/upload/stream"
    gif = requests.post(url, headers=AUTH, files={"file": ("a.gif", image_bytes(fmt="GIF",
                                                                            mode="P"))})
    assert gif.status_code == 200 and gif.json()["data"]["mime_type"] == "image/gif"
    assert gif.json()["data"]["upload_path"] == "uploads"
    assert_files_error(requests.post(url, headers=AUTH, files={"file": (
        "a.bmp", image_bytes(fmt="BMP"))}), 400, "jpeg, png, gif or webp")
    assert_files_error(requests.post(url, headers=AUTH, files={"other": ("a.png", b"x")}),
                       400, "file is required")
    assert_files_error(requests.post(url, headers=AUTH, json={"file": "x"}), 400,
                       "multipart/form-data")
    assert_files_error(requests.post(url, files={"file": ("a.png", image_bytes())}), 401)


def test_upload_names_are_sanitised():
    assert _safe_segment("../../etc/passwd") == "etc_passwd"


# ------------------------------------------------------------------------ callbacks --
def test_callback_retry_schedule_fails_twice_then_succeeds(cb_emu, img_url, receiver):
    hook = receiver([500, 503])
    task_id = create(cb_emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
    cb_emu.clock.advance(30)
    cb_emu.callbacks.wait_for(1)
    cb_emu.wait_idle()
    cb_emu.clock.advance(0.99)
    cb_emu.wait_idle()
    assert len(hook.received) == 1  # the first retry waits 1 s after the failure
    cb_emu.clock.advance(0.01)
    cb_emu.callbacks.wait_for(2)
    cb_emu.wait_idle()
    cb_emu.clock.advance(1.99)
    cb_emu.wait_idle()
    assert len(hook.received) == 2  # the second waits 2 s
    cb_emu.clock.advance(0.01)
    attempts = cb_emu.callbacks.wait_for(3)
    cb_emu.clock.advance(60)
    cb_emu.wait_idle()
    assert len(hook.received) == 3
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert [a.http_status for a in attempts] == [500, 503, 200]
    assert attempts[2].ok and not attempts[0].ok
    gaps = [b.timestamp - a.timestamp for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps == pytest.approx([1.0, 2.0], abs=0.02)
    expected = get_task(cb_emu, task_id).json()
    assert all(body == expected for _, body in hook.received)


def test_callback_gives_up_after_three_retries(cb_emu, img_url, receiver):
    hook = receiver([500] * 10)
    create(cb_emu, image_urls=[img_url], callback_url=hook.url)
    cb_emu.clock.advance(30)
    for _ in range(5):
        cb_emu.wait_idle()
        cb_emu.clock.advance(4)
    cb_emu.wait_idle()
    assert len(hook.received) == 4
    assert [a.attempt for a in cb_emu.callbacks] == [1, 2, 3, 4]


def test_callback_retry_delays_in_real_time(img_url, receiver):
    hook = receiver([500, 500, 500])
    with Emulator(speed=20, task_duration=1, allow_insecure_callbacks=True) as emu:
        create(emu, image_urls=[img_url], callback_url=hook.url)
        emu.callbacks.wait_for(4, timeout=10)
    times = [t for t, _ in hook.received]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # 1, 2 and 4 emulated seconds at 20x: 0.05, 0.1, 0.2 real seconds
    assert gaps[0] < gaps[1] < gaps[2]
    assert gaps[0] >= 0.045 and gaps[2] >= 0.19


def test_callback_timeout_is_a_failure(img_url, receiver):
    hook = receiver(sleep=0.4)
    with Emulator(manual_clock=True, allow_insecure_callbacks=True, callback_timeout=0.1,
                  callback_retry_delays=(0, 0, 0)) as emu:
        create(emu, image_urls=[img_url], callback_url=hook.url)
        emu.clock.advance(30)
        attempts = emu.callbacks.wait_for(4, timeout=10)
    assert all(a.http_status is None and "Timeout" in a.error for a in attempts)


def test_callbacks_on_failed_and_cancelled(cb_emu, img_url, receiver):
    hook = receiver()
    failed = create(cb_emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
    cancelled = create(cb_emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
    cb_emu.fail_task(failed, "model error")
    cb_emu.cancel_task(cancelled)
    cb_emu.callbacks.wait_for(2)
    statuses = {body["id"]: body["status"] for _, body in hook.received}
    assert statuses == {failed: "failed", cancelled: "cancelled"}
    with pytest.raises(ValueError):
        cb_emu.cancel_task(failed)


def test_no_callback_without_callback_url(cb_emu, img_url):
    create(cb_emu, image_urls=[img_url])
    cb_emu.clock.advance(30)
    cb_emu.wait_idle()
    assert len(cb_emu.callbacks) == 0


# --------------------------------------------------------------------------- faults --
def test_latency(emu):
    emu.faults.set_latency("credits", 0.3)
    start = time.monotonic()
    credits(emu)
    assert time.monotonic() - start >= 0.3
    emu.faults.set_latency("credits", 0)
    start = time.monotonic()
    credits(emu)
    assert time.monotonic() - start < 0.3


def test_scripted_429_with_retry_after(emu, img_url):
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    emu.faults.add_error("task", 429, count=2, retry_after=1)
    for _ in range(2):
        response = get_task(emu, task_id)
        assert_error(response, 429, "rate_limit_error")
        assert response.headers["Retry-After"] == "1"
    assert get_task(emu, task_id).status_code == 200
    assert emu.requests.count("GET", f"/v1/tasks/{task_id}") == 3
    assert credits(emu)["success"] is True  # other endpoints unaffected


@pytest.mark.parametrize("status,error_type", [(500, "internal_server_error"),
                                               (502, "upstream_error"),
                                               (503, "service_unavailable_error"),
                                               (403, "permission_error")])
def test_scripted_server_errors(emu, img_url, status, error_type):
    emu.faults.add_error("create", status)
    assert_error(create(emu, image_urls=[img_url]), status, error_type)
    assert len(emu.tasks) == 0  # a refused create makes no task
    assert create(emu, image_urls=[img_url]).status_code == 200


def test_scripted_errors_queue_in_order(emu):
    emu.faults.add_error("*", 503, retry_after=30)
    emu.faults.add_error("credits", 500)
    first = requests.get(f"{emu.url}/v1/credits", headers=AUTH)
    assert first.status_code == 503 and first.headers["Retry-After"] == "30"
    assert requests.get(f"{emu.url}/v1/credits", headers=AUTH).status_code == 500
    assert requests.get(f"{emu.url}/v1/credits", headers=AUTH).status_code == 200


def test_error_rates(img_url):
    with Emulator(manual_clock=True, seed=7) as emu:
        emu.faults.set_error_rate("credits", 1.0, status=502)
        assert_error(requests.get(f"{emu.url}/v1/credits", headers=AUTH), 502,
                     "upstream_error")
        emu.faults.set_error_rate("credits", 0.5, status=503)
        codes = [requests.get(f"{emu.url}/v1/credits", headers=AUTH).status_code
                 for _ in range(40)]
        assert 5 < codes.count(503) < 35 and codes.count(200) + codes.count(503) == 40
        emu.faults.set_error_rate("credits", 0)
        assert requests.get(f"{emu.url}/v1/credits", headers=AUTH).status_code == 200
    with pytest.raises(ValueError):
        emu.faults.set_error_rate("nope", 0.5)


def test_lose_create_answer_read_timeout(emu, img_url):
    emu.faults.lose_create_answer(mode="timeout", hold=5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        create(emu, image_urls=[img_url], timeout=(2, 0.3))
    assert len(emu.tasks) == 1  # the task was made (and reserved) nonetheless
    assert credits(emu)["data"]["user"]["remaining_credits"] == pytest.approx(998.8)
    assert create(emu, image_urls=[img_url]).status_code == 200  # only the next one


@pytest.mark.parametrize("mode", ["reset", "close"])
def test_lose_create_answer_connection_dropped(emu, img_url, mode):
    emu.faults.lose_create_answer(mode=mode)
    with requests.Session() as session, pytest.raises(requests.exceptions.ConnectionError):
        session.post(f"{emu.url}/v1/images/generations", headers=AUTH, timeout=5,
                     json={"model": MODEL, "prompt": "p", "image_urls": [img_url]})
    assert len(emu.tasks) == 1
    assert emu.requests.last("POST", "/v1/images/generations").status is None


def test_drop_callbacks(cb_emu, img_url, receiver):
    hook = receiver()
    cb_emu.faults.drop_callbacks(count=1)
    first = create(cb_emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
    second = create(cb_emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
    cb_emu.clock.advance(30)
    cb_emu.callbacks.wait_for(1)
    cb_emu.wait_idle()
    assert [body["id"] for _, body in hook.received] == [second]
    assert cb_emu.callbacks.filter(first)[0].kind == "dropped"


def test_duplicate_callbacks(cb_emu, img_url, receiver):
    hook = receiver()
    cb_emu.faults.duplicate_callbacks(times=3)
    task_id = create(cb_emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
    cb_emu.clock.advance(30)
    cb_emu.callbacks.wait_for(3)
    cb_emu.wait_idle()
    assert len(hook.received) == 3
    assert all(body["id"] == task_id and body["status"] == "completed"
               for _, body in hook.received)
    assert sorted(a.kind for a in cb_emu.callbacks) == ["delivery", "duplicate", "duplicate"]


def test_delay_callbacks(cb_emu, img_url, receiver):
    hook = receiver()
    cb_emu.faults.delay_callbacks(10)
    create(cb_emu, image_urls=[img_url], callback_url=hook.url)
    cb_emu.clock.advance(30)
    cb_emu.wait_idle()
    cb_emu.clock.advance(9.9)
    cb_emu.wait_idle()
    assert hook.received == []
    cb_emu.clock.advance(0.1)
    cb_emu.callbacks.wait_for(1)
    assert len(hook.received) == 1


def test_reorder_callbacks_sends_stale_processing_after_completed(cb_emu, img_url, receiver):
    hook = receiver()
    cb_emu.faults.reorder_callbacks()
    task_id = create(cb_emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
    cb_emu.clock.advance(30)
    cb_emu.callbacks.wait_for(2)
    cb_emu.wait_idle()
    statuses = [body["status"] for _, body in hook.received]
    assert statuses == ["completed", "processing"]
    stale = hook.received[1][1]
    assert stale["id"] == task_id and "results" not in stale and stale["progress"] < 100


def test_fail_and_cancel_next_tasks(cb_emu, img_url):
    cb_emu.faults.fail_next_tasks(count=2, message="nsfw")
    cb_emu.faults.cancel_next_tasks(count=1)
    ids = [create(cb_emu, image_urls=[img_url]).json()["id"] for _ in range(4)]
    cb_emu.clock.advance(30)
    assert [get_task(cb_emu, i).json()["status"] for i in ids] == [
        "failed", "failed", "cancelled", "completed"]
    assert cb_emu.tasks[ids[0]].error_message == "nsfw"


def test_fail_cancel_complete_a_given_task(emu, img_url):
    ids = [create(emu, image_urls=[img_url]).json()["id"] for _ in range(3)]
    emu.fail_task(ids[0])
    emu.cancel_task(ids[1])
    emu.complete_task(ids[2])
    assert [get_task(emu, i).json()["status"] for i in ids] == ["failed", "cancelled",
                                                                "completed"]
    assert "results" in get_task(emu, ids[2]).json()


def test_expire_results_early(emu, img_url):
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    emu.clock.advance(30)
    url = get_task(emu, task_id).json()["results"][0]
    assert requests.get(url).status_code == 200
    assert emu.expire_results(task_id) == 1
    assert requests.get(url).status_code == 404
    assert get_task(emu, task_id).json()["status"] == "completed"


def test_fail_rate(img_url):
    with Emulator(manual_clock=True, fail_rate=1.0) as emu:
        task_id = create(emu, image_urls=[img_url]).json()["id"]
        emu.clock.advance(30)
        assert get_task(emu, task_id).json()["status"] == "failed"


# ------------------------------------------------------------------------ request log --
def test_request_log(emu, img_url):
    task_id = create(emu, image_urls=[img_url], n=2).json()["id"]
    for _ in range(3):
        get_task(emu, task_id)
    record = emu.requests.filter("POST", "/v1/images/generations")[0]
    assert record.json["n"] == 2 and record.status == 200
    assert "Authorization" not in record.headers and "authorization" not in record.headers
    assert "sk-evo-test" not in json.dumps(record.as_dict())
    assert emu.requests.count("GET", "/v1/tasks/*") == 3
    assert emu.requests.count("GET", f"/v1/tasks/{task_id}") == 3
    emu.requests.clear()
    assert len(emu.requests) == 0


def test_reset(emu, img_url):
    create(emu, image_urls=[img_url])
    emu.faults.add_error("task", 500, count=None)
    emu.clock.set_speed(5)
    emu.reset()
    assert len(emu.tasks) == 0 and len(emu.requests) == 0
    assert credits(emu)["data"]["user"]["remaining_credits"] == 1000.0
    assert emu.faults.as_dict()["errors"] == []
    assert emu.clock.manual


# ---------------------------------------------------------------------- control API --
def test_control_api_drives_everything_over_http(emu, img_url, receiver):
    base = f"{emu.url}/_emulator"
    hook = receiver()
    emu.allow_insecure_callbacks = True
    state = requests.get(f"{base}/state").json()
    assert state["clock"]["manual"] is True and state["tasks"] == 0
    faults = requests.post(f"{base}/faults", json={
        "errors": [{"endpoint": "task", "status": 429, "count": 1, "retry_after": 2}],
        "latency": {"credits": 0.0}, "duplicate_callbacks": {"times": 2},
    }).json()
    assert faults["errors"][0]["status"] == 429
    task_id = create(emu, image_urls=[img_url], callback_url=hook.url).json()["id"]
    assert get_task(emu, task_id).status_code == 429
    clock = requests.post(f"{base}/clock", json={"advance": 30}).json()
    assert clock["manual"] is True
    assert get_task(emu, task_id).json()["status"] == "completed"
    emu.callbacks.wait_for(2)
    emu.wait_idle()
    callbacks = requests.get(f"{base}/callbacks", params={"task_id": task_id}).json()
    assert callbacks["count"] == 2 and callbacks["callbacks"][0]["ok"] is True
    log = requests.get(f"{base}/requests", params={"method": "GET",
                                                  "path": "/v1/tasks/*"}).json()
    assert log["count"] == 2 and log["requests"][0]["status"] == 429
    assert requests.post(f"{base}/credits", json={"credits": 1}).json()["data"]["user"][
        "remaining_credits"] == 1
    assert create(emu, image_urls=[img_url]).status_code == 402
    requests.post(f"{base}/credits", json={"credits": 50})
    other = create(emu, image_urls=[img_url]).json()["id"]
    assert requests.post(f"{base}/tasks/{other}/fail", json={"message": "x"}).json()[
        "status"] == "failed"
    third = create(emu, image_urls=[img_url]).json()["id"]
    assert requests.post(f"{base}/tasks/{third}/cancel").json()["status"] == "cancelled"
    fourth = create(emu, image_urls=[img_url]).json()["id"]
    assert requests.post(f"{base}/tasks/{fourth}/complete").json()["status"] == "completed"
    assert requests.post(f"{base}/expire-results", json={"task_id": fourth}).json() == {
        "expired": 1}
    tasks = requests.get(f"{base}/tasks").json()["tasks"]
    assert len(tasks) == 4 and tasks[1]["_emulator"]["error_message"] == "x"
    assert requests.get(f"{base}/tasks/nope").status_code == 404
    assert requests.post(f"{base}/faults", json={"bogus": 1}).status_code == 400
    assert requests.get(f"{base}/nothing").status_code == 404
    requests.post(f"{base}/faults", json={"fail_next": 1, "cancel_next": 1,
                                          "lose_create": {"mode": "close"},
                                          "drop_callbacks": 1, "reorder_callbacks": 1,
                                          "delay_callbacks": 5,
                                          "error_rates": {"files": 0.5}})
    assert requests.get(f"{base}/faults").json()["lose_create"]["count"] == 1
    assert requests.delete(f"{base}/faults").json()["lose_create"] is None
    assert requests.post(f"{base}/clock", json={"manual": False, "speed": 2}).json()[
        "speed"] == 2
    assert requests.post(f"{base}/reset").json() == {"ok": True}
    assert requests.get(f"{base}/state").json()["tasks"] == 0
    assert emu.requests.count(path="/_emulator/*") == 0  # the control API is not logged


def test_control_api_routes_methods_and_unknown_paths(emu, img_url):
    base = f"{emu.url}/_emulator"
    task_id = create(emu, image_urls=[img_url]).json()["id"]
    assert requests.get(base).json()["tasks"] == 1  # /_emulator itself is the state
    assert requests.put(f"{base}/clock").json()["manual"] is True
    assert requests.get(f"{base}/credits").json()["data"]["user"]["remaining_credits"] == 998.8
    for method, route in [("GET", "reset"), ("POST", "state"), ("GET", "expire-results"),
                          ("POST", "tasks"), ("GET", f"tasks/{task_id}/fail/x")]:
        answer = requests.request(method, f"{base}/{route}")
        assert answer.status_code == 404, (method, route)
        assert answer.json() == {"error": f"unknown control endpoint {method} /_emulator/{route}"}
    for method, route in [("DELETE", f"tasks/{task_id}"), ("GET", f"tasks/{task_id}/fail"),
                          ("PUT", f"tasks/{task_id}/complete")]:
        answer = requests.request(method, f"{base}/{route}")
        assert answer.status_code == 405, (method, route)
        assert answer.json() == {"error": "method not allowed"}
    assert requests.post(f"{base}/tasks/nope/fail").json() == {"error": "unknown task 'nope'"}
    assert requests.post(f"{base}/tasks/{task_id}/cancel").json()["status"] == "cancelled"
    again = requests.post(f"{base}/tasks/{task_id}/complete")
    assert again.status_code == 400 and "already cancelled" in again.json()["error"]
    assert requests.delete(f"{base}/requests").json() == {"ok": True}
    assert requests.get(f"{base}/requests").json()["count"] == 0
    assert requests.delete(f"{base}/callbacks").json() == {"ok": True}


# --------------------------------------------------------------- command line, process --
def _env():
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def test_help_documents_every_switch():
    out = subprocess.run([sys.executable, "-m", "django_evolink.emulator", "--help"],
                         capture_output=True, text=True, timeout=30, env=_env(), check=True)
    for switch in ("--host", "--port", "--credits", "--api-key", "--allow-insecure-callbacks",
                   "--speed", "--task-seconds", "--result-ttl", "--latency", "--error-rate",
                   "--callback-retry-delays", "--fail-rate", "--no-private-urls", "8765",
                   "/_emulator/faults", "lose_create"):
        assert switch in out.stdout, switch


def test_runs_in_another_process_without_django(img_url):
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from django_evolink.emulator.cli import main; "
         "assert 'django' not in sys.modules; "
         "sys.exit(main(['--port', '0', '--speed', '100', '--api-key', 'sk-evo-proc']))"],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Evolink emulator on http://127.0.0.1:")
        url = line.split()[-1]
        headers = {"Authorization": "Bearer sk-evo-proc"}
        task = requests.post(f"{url}/v1/images/generations", headers=headers, timeout=10,
                             json={"model": MODEL, "prompt": "p", "image_urls": [img_url]})
        assert task.status_code == 200
        requests.post(f"{url}/_emulator/clock", json={"advance": 60}, timeout=5)
        answer = requests.get(f"{url}/v1/tasks/{task.json()['id']}", headers=headers,
                              timeout=5).json()
        assert answer["status"] == "completed"
        assert requests.get(f"{url}/_emulator/requests", timeout=5).json()["count"] >= 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_management_command_is_a_thin_wrapper():
    from django_evolink.emulator import cli
    from django_evolink.management.commands.evolink_emulator import Command

    parser = Command().create_parser("manage.py", "evolink_emulator")
    options = vars(parser.parse_args(["--port", "9999", "--latency", "task=0.5",
                                      "--api-key", "sk-evo-a", "--allow-insecure-callbacks"]))
    assert options["port"] == 9999
    emulator = cli.make_emulator(options)
    assert emulator.faults.latency_for("task") == 0.5
    assert emulator.api_keys == {"sk-evo-a"} and emulator.allow_insecure_callbacks
    assert vars(cli.build_parser().parse_args([]))["port"] == 8765


def test_main_serves_until_stopped(monkeypatch):
    from django_evolink.emulator import cli

    started = []
    monkeypatch.setattr(Emulator, "block", lambda self: started.append(self.url))
    out = io.StringIO()
    assert cli.run(vars(cli.build_parser().parse_args(["--port", "0"])), out=out) == 0
    assert started and started[0] in out.getvalue()


def test_importing_the_emulator_does_not_import_django():
    code = ("import sys; import django_evolink.emulator, django_evolink.emulator.cli; "
            "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30, env=_env())


# ------------------------------------------------------------------------- pytest plugin --
def test_fixture_points_settings_at_the_emulator(evolink_emulator, settings):
    assert settings.EVOLINK["BASE_URL"] == evolink_emulator.url
    assert settings.EVOLINK["FILES_BASE_URL"] == evolink_emulator.url
    assert settings.EVOLINK["API_KEY"].startswith("sk-evo-emulator")
    assert settings.EVOLINK["ALLOW_PRIVATE_URLS"] is True
    assert settings.EVOLINK["RETRY_BACKOFF"] == 0.0  # other keys kept
    assert len(evolink_emulator.tasks) == 0
    evolink_emulator.faults.add_error("task", 500, count=None)


def test_fixture_is_fresh_for_each_test(evolink_emulator):
    assert evolink_emulator.faults.as_dict()["errors"] == []
    assert evolink_emulator.allow_insecure_callbacks and evolink_emulator.clock.speed == 30


@pytest.mark.evolink_emulator(manual_clock=True, credits=5)
def test_fixture_marker_options(evolink_emulator, img_url):
    assert evolink_emulator.clock.manual
    assert credits(evolink_emulator)["data"]["user"]["remaining_credits"] == 5


def test_plugin_works_without_django(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "def test_it(evolink_emulator):\n"
        "    import requests\n"
        "    r = requests.get(evolink_emulator.url + '/v1/credits',\n"
        "                     headers={'Authorization': 'Bearer sk-evo-x'})\n"
        "    assert r.json()['success'] is True\n"
    )
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(tmp_path / "test_x.py")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env=_env())
    assert "1 passed" in out.stdout, out.stdout + out.stderr
