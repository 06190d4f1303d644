"""The emulator serves every image model of the catalogue with that model's rules.

Generated from the catalogue (tests/support/catalogue_cases.py): a valid request per
model is accepted and its results follow the request (count, and size/quality -> pixel
size); one invalid value per model is refused as Evolink does (400 naming the
parameter); unknown and non-image models are refused.
"""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from django_evolink.emulator import Emulator
from django_evolink.evolink.modelspec import load
from tests.support.catalogue_cases import (
    IMAGE_MODELS,
    fitting_image,
    invalid_cases,
    spec_of,
    valid_body,
)

AUTH = {"Authorization": "Bearer sk-evo-test-0123"}


@pytest.fixture(scope="module")
def emu():
    emulator = Emulator(manual_clock=True, credits=1e6).start()
    yield emulator
    emulator.stop()


def _http() -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    return http


def _upload(emulator: Emulator, data: bytes) -> str:
    answer = _http().post(f"{emulator.url}/api/v1/files/upload/stream", headers=AUTH,
                          files={"file": ("in.jpg", data)}, timeout=10)
    return answer.json()["data"]["file_url"]


def _create(emulator: Emulator, body: dict) -> requests.Response:
    return _http().post(f"{emulator.url}/v1/images/generations", json=body, headers=AUTH,
                        timeout=10)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_image_model_is_served_and_its_results_follow_the_request(emu, name):
    spec = spec_of(name)
    image = fitting_image(spec.images)
    body = {"model": name, **valid_body(spec, url=lambda: _upload(emu, image))}
    if spec.takes("n") and (spec.n_max or 1) >= 2 and not spec.rules:
        body["n"] = 2
    response = _create(emu, body)
    assert response.status_code == 200, response.text
    task_id = response.json()["id"]
    emu.complete_task(task_id)
    results = _http().get(f"{emu.url}/v1/tasks/{task_id}", headers=AUTH,
                          timeout=10).json()["results"]
    assert len(results) == body.get("n", 1)
    first = _http().get(results[0], timeout=30)
    params = {k: v for k, v in body.items() if k not in ("model", "prompt", "image_urls", "n")}
    assert Image.open(io.BytesIO(first.content)).size == spec.output_size(params)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_a_bad_parameter_is_refused_naming_it(emu, name):
    spec = spec_of(name)
    param, value = next(iter(invalid_cases(spec)))
    body = {"model": name, **valid_body(spec, url=lambda: _upload(emu, fitting_image(
        spec.images))), param: value}
    response = _create(emu, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_a_parameter_the_model_does_not_take(emu):
    response = _create(emu, {"model": "wan2.5-text-to-image", "prompt": "p",
                             "image_urls": ["https://example.com/a.png"]})
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "image_urls"
    assert "text to image" in error["message"]
    response = _create(emu, {"model": "z-image-turbo", "prompt": "p", "quality": "2K"})
    assert response.json()["error"]["param"] == "quality"


def test_size_in_pixels_makes_results_of_that_size(emu):
    body = {"model": "wan2.5-text-to-image", "prompt": "a fox", "size": "800x1000"}
    task_id = _create(emu, body).json()["id"]
    emu.complete_task(task_id)
    [url] = _http().get(f"{emu.url}/v1/tasks/{task_id}", headers=AUTH).json()["results"]
    assert Image.open(io.BytesIO(_http().get(url).content)).size == (800, 1000)
    response = _create(emu, {**body, "size": "100x100"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "size"


def test_unknown_and_non_image_models(emu):
    response = _create(emu, {"model": "dall-e-3", "prompt": "p"})
    assert response.status_code == 404 and response.json()["error"]["param"] == "model"
    video = next(spec for spec in load().of_kind("video"))
    response = _create(emu, {"model": video.name, "prompt": "p"})
    assert response.status_code == 404  # not served on the image endpoint
    with Emulator(manual_clock=True, models=[video.name]) as only_video:
        response = _create(only_video, {"model": video.name, "prompt": "p"})
        assert response.status_code == 400
        assert "/v1/videos/generations" in response.json()["error"]["message"]


def test_per_model_image_limits_apply_to_urls(emu):
    small = io.BytesIO()
    Image.new("RGB", (300, 300)).save(small, format="PNG")
    url = _upload(emu, small.getvalue())
    # 300 px is under wan2.5's 384 px ...
    response = _create(emu, {"model": "wan2.5-image-to-image", "prompt": "p",
                             "image_urls": [url]})
    # (a failure of the task, as Evolink fetches the inputs after accepting it)
    assert response.status_code == 200, response.text
    emu.clock.advance(2)
    failed = emu.wait_for_task(response.json()["id"], "failed", timeout=1)
    assert failed.error_code == "image_processing_error"
    assert "[384, 5000]" in failed.to_json()["error"]["message"]
    # ... and fine for Seedream 4.0
    response = _create(emu, {"model": "doubao-seedream-4.0", "prompt": "p",
                             "image_urls": [url]})
    assert response.status_code == 200, response.text
