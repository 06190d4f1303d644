"""``GET models/`` (evolink:model-list) and ``params`` in the task JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from django.urls import reverse
from jsonschema import Draft202012Validator

from tests.support.api import LIST_URL, create_calls, set_evolink

pytest_plugins = ["tests.support.api_fixtures"]

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]

MODELS_URL = reverse("evolink:model-list")


def test_models_lists_the_allowed_models_with_a_json_schema_each(api, settings):
    set_evolink(settings, MODELS=["wan2.5-text-to-image", "wan2.5-image-to-image"])
    response = api.get(MODELS_URL)
    assert response.status_code == 200
    data = response.json()
    assert [m["name"] for m in data] == ["wan2.5-image-to-image", "wan2.5-text-to-image"]
    assert [m["default"] for m in data] == [True, False]
    assert all(m["kind"] == "image" for m in data)
    for model in data:
        Draft202012Validator.check_schema(model["parameters"])
    t2i = Draft202012Validator(data[1]["parameters"])
    assert t2i.is_valid({"model": "wan2.5-text-to-image", "prompt": "a fox",
                         "size": "1024x1024"})
    assert not t2i.is_valid({"model": "wan2.5-text-to-image", "prompt": "a fox",
                             "image_urls": ["https://example.com/a.png"]})


def test_every_image_model_by_default(api, settings):
    set_evolink(settings, MODELS=None)
    assert len(api.get(MODELS_URL).json()) == 54


def test_models_needs_authentication(anon):
    assert anon.get(MODELS_URL).status_code in (401, 403)


def test_the_task_json_echoes_params(api, settings, evolink_http):
    set_evolink(settings, MODELS=None)
    response = api.post(LIST_URL, {"model": "wan2.5-text-to-image", "prompt": "a fox",
                                   "size": "1024x1024", "prompt_extend": False},
                        format="json")
    assert response.status_code == 201, response.content
    assert response.json()["params"] == {"size": "1024x1024", "prompt_extend": False}
    assert response.json()["image_urls"] == []
    sent = json.loads(create_calls(evolink_http)[0].request.body)
    assert sent == {"model": "wan2.5-text-to-image", "prompt": "a fox", "n": 1,
                    "size": "1024x1024", "prompt_extend": False}


def test_the_openapi_document_has_one_create_body_per_model():
    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml")
                            .read_text())
    body = schema["paths"]["/evolink/tasks/"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    create = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert create["discriminator"]["propertyName"] == "model"
    mapping = create["discriminator"]["mapping"]
    assert len(mapping) == len(create["oneOf"]) == 54
    t2i = schema["components"]["schemas"][mapping["wan2.5-text-to-image"].rsplit("/", 1)[-1]]
    assert "image_urls" not in t2i["properties"] and t2i["additionalProperties"] is False
