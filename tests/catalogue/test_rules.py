"""The rules JSON Schema cannot state, and their messages (what is allowed)."""

from __future__ import annotations

import io

import pytest

from django_evolink.evolink import catalogue
from django_evolink.evolink.modelspec import load
from django_evolink.exceptions import EvolinkValidationError
from tests.conftest import make_image_bytes

URL = "https://93.184.215.14/a.png"


@pytest.fixture(autouse=True)
def every_model(settings):
    settings.EVOLINK = {**settings.EVOLINK, "MODELS": None}


def errors(model, **kw):
    kw.setdefault("prompt", "a fox")
    try:
        catalogue.validate_request(model=model, resolve=False, **kw)
    except EvolinkValidationError as exc:
        return exc.errors
    return {}


def test_text_to_image_needs_no_images_and_sends_none():
    cleaned = catalogue.validate_request(model="wan2.5-text-to-image", prompt="a fox",
                                         params={"size": "1024x1024", "prompt_extend": False})
    assert cleaned == {"model": "wan2.5-text-to-image", "prompt": "a fox", "image_urls": [],
                       "n": 1, "params": {"size": "1024x1024", "prompt_extend": False}}
    body = load().models["wan2.5-text-to-image"].request_body(
        prompt="a fox", image_urls=[], n=1, params=cleaned["params"])
    assert body == {"model": "wan2.5-text-to-image", "prompt": "a fox", "n": 1,
                    "size": "1024x1024", "prompt_extend": False}


@pytest.mark.parametrize(("size", "message"), [
    ("1024x1024", None),
    ("1280*1280", None),
    ("512x512", "size 512x512 is 262144 pixels; allowed: from 589824 to 2073600 pixels."),
    ("2048x2048", "size 2048x2048 is 4194304 pixels; allowed: from 589824 to 2073600 pixels."),
    ("3000x600", "size 3000x600: width/height must be from 0.25 to 4."),
    ("16:9", "size must be WIDTHxHEIGHT in pixels, e.g. 1024x1024."),
])
def test_size_in_pixels(size, message):
    got = errors("wan2.5-text-to-image", params={"size": size}).get("size")
    assert got == ([message] if message else None)


def test_size_ratios_or_pixels_say_what_is_allowed():
    [message] = errors("doubao-seedream-4.0", params={"size": "7:5"})["size"]
    assert message.startswith("size must be one of auto, 1:1, 2:3") and "WIDTHxHEIGHT" in message


def test_size_sides_and_multiples():
    assert errors("qwen-image-edit-plus", image_urls=[URL], params={"size": "500x600"})[
        "size"] == ["size 500x600: width and height must each be from 512 to 2048 px."]
    assert errors("gpt-image-2", params={"size": "1000x1008"})["size"] == [
        "size 1000x1008: width and height must be multiples of 16."]


def test_reference_images_plus_outputs_at_most_15():
    assert errors("doubao-seedream-4.0", image_urls=[URL] * 14, n=1) == {}
    assert errors("doubao-seedream-4.0", image_urls=[URL] * 14, n=2)["n"] == [
        "For doubao-seedream-4.0, reference images plus images to generate are at most 15 "
        "(got 14 + 2)."]


def test_a_parameter_allowed_only_with_another():
    assert errors("qwen-image-edit-plus", image_urls=[URL], n=1,
                  params={"size": "1024x1024"}) == {}
    assert errors("qwen-image-edit-plus", image_urls=[URL], n=2,
                  params={"size": "1024x1024"})["size"] == [
        "size can only be set when n is 1, for qwen-image-edit-plus."]


def test_transparent_background_rules():
    assert errors("gpt-image-2", params={"background": "transparent",
                                         "output_format": "jpeg"})["output_format"] == [
        "With background=transparent, output_format must be one of: png, webp."]
    assert errors("gpt-image-2", params={"background": "transparent",
                                         "output_format": "webp"}) == {}
    assert errors("doubao-seedream-5.0-pro", image_urls=[URL, URL],
                  params={"background": "transparent"})["background"] == [
        "With background=transparent, doubao-seedream-5.0-pro takes exactly 1 reference "
        "image (got 2)."]


def test_enum_range_type_and_unknown_messages():
    assert errors("doubao-seedream-4.5", params={"quality": "1K"})["quality"] == [
        "quality must be one of: 2K, 4K."]
    assert errors("qwen-image-3.0", params={"seed": -1})["seed"] == [
        "seed must be from 0 to 2147483647."]
    assert errors("qwen-image-3.0", params={"watermark": "yes"})["watermark"] == [
        "watermark must be true or false."]
    assert errors("qwen-image-3.0", params={"negative_prompt": "x" * 501})["negative_prompt"] == [
        "negative_prompt is at most 500 characters (got 501)."]
    [message] = errors("z-image-turbo", params={"quality": "2K"})["quality"]
    assert message == ("quality is not a parameter of z-image-turbo. It takes: prompt, size, "
                       "seed, nsfw_check.")
    assert errors("mj-v7-enhance", prompt="")["model_params"] == [
        "model_params is required for mj-v7-enhance."]
    [message] = errors("mj-v7-enhance", prompt="",
                       params={"model_params": {"task_id": "t", "image_number": 9}})[
        "model_params"]
    assert message == "model_params.image_number must be one of: 0, 1, 2, 3."


def test_prompt_of_a_model_without_prompt_is_refused():
    assert "prompt" in errors("mj-v7-enhance", prompt="a fox",
                              params={"model_params": {"task_id": "t"}})


def test_utf8_byte_limit_of_gpt_image_2():
    assert errors("gpt-image-2", prompt="あ" * 20001)["prompt"] == [
        "prompt is at most 60000 bytes in UTF-8 (got 60003)."]


def test_unstorable_text_in_a_parameter_is_refused():
    assert errors("qwen-image-3.0", params={"negative_prompt": "a\x00b"})["negative_prompt"] == [
        "negative_prompt: Text must not contain NUL (\\x00) characters."]
    [message] = errors("mj-v7-outpaint", prompt="", params={
        "model_params": {"task_id": "t\ud800"}})["model_params"]
    assert message.startswith("model_params: Text must be valid Unicode")
    [message] = errors("qwen-image-3.0", params={"\ud800": 1})["params"]
    assert message.startswith("A parameter's name: Text must be valid Unicode")


def test_params_cannot_smuggle_reserved_fields():
    for name in ("model", "callback_url", "n"):
        assert name in errors("wan2.5-text-to-image", params={name: "x"})


def test_form_values_follow_the_parameter_types():
    spec = load().models["qwen-image-3.0"]
    assert spec.form_value("seed", "42") == 42
    assert spec.form_value("watermark", "true") is True
    assert spec.form_value("watermark", "maybe") == "maybe"
    assert spec.form_value("size", "16:9") == "16:9"
    mj = load().models["mj-v7-outpaint"]
    assert mj.form_value("model_params", '{"task_id": "t"}') == {"task_id": "t"}


@pytest.mark.parametrize(("model", "params", "size"), [
    ("doubao-seedream-4.0", {"size": "16:9", "quality": "4K"}, (5504, 3040)),
    ("doubao-seedream-4.0", {"size": "16:9"}, (2848, 1600)),  # quality's default: 2K
    ("wan2.5-text-to-image", {"size": "800x600"}, (800, 600)),
    ("z-image-turbo", {"size": "2:1"}, (1024, 512)),
    ("wan2.5-image-to-image", {}, (1024, 1024)),
])
def test_output_size_follows_size_and_quality(model, params, size):
    assert load().models[model].output_size(params) == size


def _upload_errors(model, data):
    return catalogue.image_file_errors(catalogue.get_spec(model), io.BytesIO(data))[0]


def test_upload_limits_are_per_model():
    # 300x300 is under wan2.5's 384 px but fine for Seedream (sides over 14 px)
    assert _upload_errors("doubao-seedream-4.0", make_image_bytes(300, 300, "PNG")) == []
    assert _upload_errors("doubao-seedream-4.0", make_image_bytes(14, 300, "PNG")) == [
        "The image is 14x300 px; width and height must each be at least 15 px."]
    assert _upload_errors("doubao-seedream-4.0", make_image_bytes(20, 400, "PNG")) == [
        "The image is 20x400 px; width/height must be from 0.0625 to 16.0."]
    # Seedream takes gif and tiff, wan2.5 does not
    assert _upload_errors("doubao-seedream-4.0", make_image_bytes(400, 400, "GIF")) == []
    assert "not accepted" in _upload_errors("wan2.5-image-to-image",
                                            make_image_bytes(400, 400, "TIFF"))[0]
    # layerize: at least 262144 pixels
    assert _upload_errors("doubao-seedream-5.0-flash-layerize",
                          make_image_bytes(500, 500, "PNG")) == [
        "The image is 500x500 px (250000 pixels); allowed: from 262144 to 36000000 pixels."]
    # transparency is fine where the model does not refuse it
    assert _upload_errors("gpt-image-2", make_image_bytes(400, 400, "PNG", mode="RGBA")) == []


def test_form_json_nested_too_deep_stays_text_and_is_refused():
    mj = load().models["mj-v7-outpaint"]
    deep = "[" * 100000 + "]" * 100000
    assert mj.form_value("model_params", deep) == deep
    assert errors("mj-v7-outpaint", prompt="", params={"model_params": deep})[
        "model_params"] == ["model_params must be an object."]


def test_upload_bounds_follow_the_allowed_models(settings):
    assert catalogue.upload_bounds() == (16, 50 * 1024 * 1024)  # every model (gpt-image-2)
    settings.EVOLINK = {**settings.EVOLINK, "MODELS": ["wan2.5-image-to-image"]}
    assert catalogue.upload_bounds() == (2, 10 * 1024 * 1024)
    settings.EVOLINK = {**settings.EVOLINK, "MODELS": ["wan2.5-text-to-image"],
                        "DEFAULT_MODEL": "wan2.5-text-to-image"}
    assert catalogue.upload_bounds() == (1, 10 * 1024 * 1024)
