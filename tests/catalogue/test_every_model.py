"""Every image model of the catalogue, through every entry point, generated from the data.

For each model: a valid task is created against the emulator and the exact body Evolink
receives is checked; one invalid value per parameter, and a parameter the model does not
take, are refused with 400 keyed by the parameter and nothing is sent; uploads within the
model's image limits are accepted. A model added to ``catalogue.json`` is covered here
without new code.
"""

from __future__ import annotations

import json

import pytest
import requests

from django_evolink.core import services
from django_evolink.evolink.modelspec import load
from django_evolink.models import ImageTask
from django_evolink.pytest_plugin import EMULATOR_API_KEY
from tests.support import catalogue_cases as cases
from tests.support.api import LIST_URL, create_calls, set_evolink, upload

pytest_plugins = ["tests.support.api_fixtures"]

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]

INVALID = [(name, param, value) for name in cases.IMAGE_MODELS
           for param, value in cases.invalid_cases(cases.spec_of(name))]
WITH_IMAGES = [name for name in cases.IMAGE_MODELS if cases.spec_of(name).images is not None]


@pytest.fixture
def every_model(settings):
    set_evolink(settings, MODELS=None)


def _emulator_upload(emulator, data: bytes) -> str:
    http = requests.Session()
    http.trust_env = False
    answer = http.post(f"{emulator.url}/api/v1/files/upload/stream",
                       headers={"Authorization": f"Bearer {EMULATOR_API_KEY}"},
                       files={"file": ("input.jpg", data)}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["file_url"]


def _creates(emulator) -> list:
    return [r for r in emulator.requests if r.method == "POST"
            and r.path == "/v1/images/generations"]


def test_the_catalogue_has_every_image_model_of_the_data():
    assert len(cases.IMAGE_MODELS) == 54
    assert {"wan2.5-image-to-image", "wan2.5-text-to-image", "doubao-seedream-4.5",
            "gpt-image-1.5", "qwen-image-edit", "z-image-turbo"} <= set(cases.IMAGE_MODELS)


@pytest.mark.parametrize("name", cases.IMAGE_MODELS)
def test_a_valid_task_reaches_evolink_with_exactly_the_models_parameters(
        name, evolink_emulator, every_model):
    spec = cases.spec_of(name)
    image = cases.fitting_image(spec.images)
    body = cases.valid_body(spec, url=lambda: _emulator_upload(evolink_emulator, image))
    task = services.create_task(
        model=name, prompt=body.get("prompt"), image_urls=body.get("image_urls"),
        n=body.get("n"),
        params={k: v for k, v in body.items() if k not in ("prompt", "image_urls", "n")},
    )
    assert task.status == "pending", (task.error_code, task.error_message)
    [sent] = _creates(evolink_emulator)
    assert sent.json == {"model": name, **body}
    assert task.params == {k: v for k, v in body.items()
                           if k not in ("prompt", "image_urls", "n")}
    assert task.n == body.get("n", 1)


@pytest.mark.parametrize(("name", "param", "value"), INVALID,
                         ids=[f"{n}-{p}" for n, p, _ in INVALID])
def test_an_invalid_value_is_refused_with_400_naming_the_parameter(
        name, param, value, api, evolink_http, every_model):
    body = {"model": name, **cases.valid_body(cases.spec_of(name)), param: value}
    response = api.post(LIST_URL, body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    assert list(errors) == [param], errors
    assert create_calls(evolink_http) == []
    assert not ImageTask.objects.exists()


@pytest.mark.parametrize("name", cases.IMAGE_MODELS)
def test_a_parameter_the_model_does_not_take_is_refused(name, api, evolink_http, every_model):
    body = {"model": name, **cases.valid_body(cases.spec_of(name)), "not_a_parameter": 1}
    response = api.post(LIST_URL, body, format="json")
    assert response.status_code == 400
    [message] = response.json()["not_a_parameter"]
    assert name in message and "It takes:" in message
    assert create_calls(evolink_http) == []


@pytest.mark.parametrize("name", WITH_IMAGES)
def test_an_upload_within_the_models_limits_is_accepted(name, api, evolink_emulator,
                                                        every_model):
    spec = cases.spec_of(name)
    fields = {k: v for k, v in cases.valid_body(spec).items() if k != "image_urls"}
    form = {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower()
                if isinstance(v, bool) else str(v)) for k, v in fields.items()}
    form["model"] = name
    form["images"] = [upload("in.jpg", cases.fitting_image(spec.images), "image/jpeg")]
    response = api.post(LIST_URL, form, format="multipart")
    assert response.status_code == 201, response.content
    [sent] = _creates(evolink_emulator)
    assert len(sent.json["image_urls"]) == 1
    assert {k: v for k, v in sent.json.items() if k != "image_urls"} == {
        "model": name, **fields}


@pytest.mark.parametrize("name", [n for n in cases.IMAGE_MODELS if cases.spec_of(n).images is None])
def test_text_to_image_models_take_no_images(name, api, evolink_http, every_model):
    body = {"model": name, **cases.valid_body(cases.spec_of(name)), "image_urls": ["https://93.184.215.14/a.png"]}
    response = api.post(LIST_URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["image_urls"] == [f"{name} takes no images."]
    form = {"model": name, "prompt": "p", "images": [upload("in.png", cases.fitting_image(None))]}
    response = api.post(LIST_URL, form, format="multipart")
    assert response.status_code == 400
    assert response.json()["images"] == [f"{name} takes no images."]


def test_video_and_audio_models_are_refused_on_model(api, evolink_http, every_model):
    for name in ("MiniMax-Hailuo-02",):
        response = api.post(LIST_URL, {"model": name, "prompt": "p"}, format="json")
        assert response.status_code == 400
        assert "video model" in response.json()["model"][0]
    audio = next(spec.name for spec in load().of_kind("audio"))
    response = api.post(LIST_URL, {"model": audio, "prompt": "p"}, format="json")
    assert "audio model" in response.json()["model"][0]
    assert create_calls(evolink_http) == []
