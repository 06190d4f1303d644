"""Multipart create: Pillow checks at their boundaries, input copies, upload backends."""

from __future__ import annotations

import io
import json
import zlib

import pytest
import responses
from PIL import Image

from django_evolink import conf
from django_evolink.models import ImageTask
from tests.support.api import (
    LIST_URL,
    UPLOAD_URL,
    create_calls,
    image_bytes,
    set_evolink,
    upload,
    upload_calls,
)
from tests.support.evolink_samples import error_answer, upload_answer

pytest_plugins = ["tests.support.api_fixtures"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]

MB10 = 10 * 1024 * 1024


@pytest.fixture(autouse=True)
def _resolvable(settings):
    # Evolink's file URLs in the canned answers are not resolvable offline.
    set_evolink(settings, ALLOW_PRIVATE_URLS=True)


def send(api, *files, **fields):
    data = {"prompt": "make it blue", **fields}
    if files:
        data["images"] = list(files)
    return api.post(LIST_URL, data, format="multipart")


def png(width=512, height=512, name="in.png", **kw):
    return upload(name, image_bytes(width, height, **kw))


def stored_inputs():
    storage = conf.storage()
    prefix = conf.get("INPUTS_PATH")
    found = []

    def walk(path):
        dirs, files = storage.listdir(path)
        found.extend(f"{path}/{f}" for f in files)
        for d in dirs:
            walk(f"{path}/{d}")

    if storage.exists(prefix):
        walk(prefix)
    return found


def assert_refused(response, rsps, field, fragment):
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert any(fragment in m for m in errors[field]), errors
    assert len(rsps.calls) == 0
    assert not ImageTask.objects.exists()
    assert stored_inputs() == []


# ----------------------------------------------------------------- count and fields


def test_one_image_is_uploaded_stored_and_submitted(api, evolink_http):
    response = send(api, png(), n="2")
    assert response.status_code == 201, response.content
    task = ImageTask.objects.get()
    assert task.n == 2
    assert task.image_urls == [upload_answer()["data"]["file_url"]]
    assert len(task.input_files) == 1
    name = task.input_files[0]
    assert name.startswith("evolink/inputs/") and name.endswith(".png")
    with conf.storage().open(name) as f:
        assert f.read() == image_bytes()
    (call,) = upload_calls(evolink_http)
    assert b'name="file"' in call.request.body
    assert b"in.png" not in call.request.body  # the person's file name is not sent
    sent = json.loads(create_calls(evolink_http)[0].request.body)
    assert sent["image_urls"] == task.image_urls and sent["n"] == 2
    assert "input_files" not in response.json()


def test_two_images_are_accepted(api, evolink_http):
    assert send(api, png(), png(600, 400, name="b.png")).status_code == 201
    assert len(upload_calls(evolink_http)) == 2
    assert len(ImageTask.objects.get().input_files) == 2


@pytest.mark.parametrize(("count", "fragment"), [
    (0, "At least 1 image for wan2.5-image-to-image."),
    (3, "At most 2 images for wan2.5-image-to-image."),
])
def test_zero_or_three_images_are_refused(api, evolink_http, count, fragment):
    files = [png(name=f"{i}.png") for i in range(count)]
    assert_refused(send(api, *files), evolink_http, "images", fragment)


@pytest.mark.parametrize(("fields", "field", "fragment"), [
    ({"prompt": ""}, "prompt", "A prompt is required"),
    ({"prompt": "x" * 2001}, "prompt", "At most 2000 characters"),
    ({"n": "0"}, "n", "from 1 to 4"),
    ({"n": "5"}, "n", "from 1 to 4"),
    ({"n": "two"}, "n", "from 1 to 4"),
    ({"model": "other"}, "model", "Unknown model"),
    ({"image_urls": "https://93.184.215.14/a.png"}, "image_urls", "not both"),
])
def test_bad_form_fields_are_refused(api, evolink_http, fields, field, fragment):
    assert_refused(send(api, png(), **fields), evolink_http, field, fragment)


def test_text_instead_of_a_file_is_refused(api, evolink_http):
    response = api.post(LIST_URL, {"prompt": "p", "images": "just text"}, format="multipart")
    assert_refused(response, evolink_http, "images", "send a file")


# ----------------------------------------------------------------- sides and size


@pytest.mark.parametrize(("width", "height"), [(383, 512), (512, 383), (5001, 400),
                                               (400, 5001)])
def test_sides_outside_384_to_5000_are_refused(api, evolink_http, width, height):
    assert_refused(send(api, png(width, height)), evolink_http, "images",
                   f"The image is {width}x{height} px; width and height must each be from "
                   "384 to 5000 px.")


@pytest.mark.parametrize(("width", "height"), [(384, 384), (5000, 384), (384, 5000)])
def test_sides_at_the_limits_are_accepted(api, evolink_http, width, height):
    assert send(api, png(width, height)).status_code == 201


def test_ten_megabytes_is_accepted_one_byte_more_is_refused(api, evolink_http):
    exact = upload("big.png", image_bytes(pad_to=MB10))
    assert send(api, exact).status_code == 201
    over = upload("big.png", image_bytes(pad_to=MB10 + 1))
    ImageTask.objects.all().delete()
    for name in stored_inputs():
        conf.storage().delete(name)
    evolink_http.calls.reset()
    # refused while it is received (django_evolink.api.parsers), not after
    assert_refused(send(api, over), evolink_http, "images",
                   "Image 1 (big.png): the file is larger than 10 MB")


def test_an_empty_file_is_refused(api, evolink_http):
    assert_refused(send(api, upload("e.png", b"")), evolink_http, "images", "empty")


# ----------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_accepted_formats(api, evolink_http, fmt):
    assert send(api, upload("in.img", image_bytes(fmt=fmt), "image/x-anything")).status_code \
        == 201


def test_the_format_is_judged_from_the_content_not_the_name(api, evolink_http):
    # png content named .jpg: accepted, stored as .png
    assert send(api, upload("photo.jpg", image_bytes(), "image/jpeg")).status_code == 201
    assert ImageTask.objects.get().input_files[0].endswith(".png")


def test_a_gif_named_png_is_refused(api, evolink_http):
    gif = upload("photo.png", image_bytes(fmt="GIF", mode="P"), "image/png")
    assert_refused(send(api, gif), evolink_http, "images",
                   "Format GIF is not accepted; allowed: jpeg, png, bmp, webp.")


def test_text_named_png_is_refused(api, evolink_http):
    assert_refused(send(api, upload("x.png", b"hello, not an image" * 10)), evolink_http,
                   "images", "not a readable image")


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGBA"), ("WEBP", "RGBA"), ("PNG", "LA")])
def test_transparent_images_are_refused(api, evolink_http, fmt, mode):
    assert_refused(send(api, upload("a.img", image_bytes(fmt=fmt, mode=mode))), evolink_http,
                   "images", "transparency")


def test_a_truncated_file_is_refused(api, evolink_http):
    buf = io.BytesIO()
    Image.effect_noise((600, 600), 60).convert("RGB").save(buf, format="JPEG")
    data = buf.getvalue()
    assert_refused(send(api, upload("t.jpg", data[: len(data) // 2], "image/jpeg")),
                   evolink_http, "images", "truncated or corrupt")


def test_a_decompression_bomb_is_refused(api, evolink_http, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    assert_refused(send(api, png(1000, 1000)), evolink_http, "images", "too many pixels")


def test_a_bomb_header_is_refused_before_decoding(api, evolink_http):
    # a valid png header claiming 60000 x 60000 pixels (3.6 gigapixels): never decoded
    data = bytearray(image_bytes(400, 400))
    data[16:24] = (60000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # keep the header valid
    assert_refused(send(api, upload("bomb.png", bytes(data))), evolink_http, "images",
                   "too many pixels")


def test_the_second_file_is_named_in_the_message(api, evolink_http):
    response = send(api, png(), png(100, 100, name="small.png"))
    assert_refused(response, evolink_http, "images", "Image 2 (small.png)")


# ----------------------------------------------------------------- backends


def test_bmp_is_sent_to_evolink_as_png_and_kept_as_bmp(api, evolink_http):
    bmp = upload("in.bmp", image_bytes(fmt="BMP"), "image/bmp")
    assert send(api, bmp).status_code == 201
    body = upload_calls(evolink_http)[0].request.body
    assert b"\x89PNG" in body and b"image/png" in body
    assert ImageTask.objects.get().input_files[0].endswith(".bmp")


def test_storage_backend_uses_upload_url_base(api, settings, evolink_http):
    set_evolink(settings, UPLOAD_BACKEND="storage", UPLOAD_URL_BASE="https://cdn.example.com/")
    assert send(api, png()).status_code == 201
    task = ImageTask.objects.get()
    assert task.image_urls == [f"https://cdn.example.com/media/{task.input_files[0]}"]
    assert upload_calls(evolink_http) == []


def test_storage_backend_falls_back_to_the_request(api, settings, evolink_http):
    set_evolink(settings, UPLOAD_BACKEND="storage")
    assert send(api, png()).status_code == 201
    task = ImageTask.objects.get()
    assert task.image_urls == [f"http://testserver/media/{task.input_files[0]}"]


def test_storage_backend_urls_must_be_reachable(api, settings, evolink_http):
    set_evolink(settings, UPLOAD_BACKEND="storage", ALLOW_PRIVATE_URLS=False,
                UPLOAD_URL_BASE="http://127.0.0.1:8000")
    response = send(api, png())
    assert response.status_code == 400
    assert "private" in response.json()["images"][0]
    assert len(create_calls(evolink_http)) == 0
    assert not ImageTask.objects.exists() and stored_inputs() == []


def test_unknown_backend_is_a_configuration_error(api, settings, evolink_http):
    set_evolink(settings, UPLOAD_BACKEND="ftp")
    response = send(api, png())
    assert response.status_code == 502
    assert response.json()["code"] == "configuration_error"
    assert response.json()["task"] is None
    assert stored_inputs() == []


@pytest.mark.parametrize(("status", "answer"), [(400, 400), (401, 502), (500, 502)])
def test_a_refused_upload_maps_like_create_and_keeps_nothing(api, settings, status, answer):
    set_evolink(settings, MAX_RETRIES=0)
    with responses.RequestsMock() as rsps:
        rsps.post(UPLOAD_URL, status=status, json=error_answer(status))
        response = send(api, png())
    assert response.status_code == answer
    assert response.json()["task"] is None
    assert not ImageTask.objects.exists() and stored_inputs() == []


def test_an_upload_answer_without_a_file_url_is_a_malformed_answer(api, settings):
    """Evolink answered the upload but named no URL to pass on: 502 with the malformed
    answer's code, nothing kept (this path raised ModuleNotFoundError after the move into api/)."""
    answer = upload_answer()
    del answer["data"]["file_url"], answer["data"]["download_url"]
    with responses.RequestsMock() as rsps:
        rsps.post(UPLOAD_URL, json=answer)
        response = send(api, png())
    assert response.status_code == 502, response.content
    assert response.json()["code"] == "malformed_response"
    assert response.json()["task"] is None
    assert not ImageTask.objects.exists() and stored_inputs() == []


def test_an_evolink_refusal_after_upload_keeps_the_copies_on_the_failed_task(api, settings):
    set_evolink(settings, MAX_RETRIES=0)
    with responses.RequestsMock() as rsps:
        rsps.post(UPLOAD_URL, json=upload_answer())
        rsps.post("https://api.evolink.test/v1/images/generations", status=402,
                  json=error_answer(402))
        response = send(api, png())
    assert response.status_code == 503
    task = ImageTask.objects.get()
    assert task.status == "failed" and len(task.input_files) == 1
    assert stored_inputs() == task.input_files


def test_uploads_through_the_emulator(api, evolink_emulator):
    response = send(api, png(), upload("b.webp", image_bytes(fmt="WEBP"), "image/webp"))
    assert response.status_code == 201, response.content
    assert len(evolink_emulator.uploads) == 2
    task = list(evolink_emulator.tasks.values())[-1]
    assert task.image_urls == response.json()["image_urls"]

