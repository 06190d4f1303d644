"""The model catalogue's rules at their boundaries."""

import io

import pytest
from PIL import Image

from django_evolink.evolink import catalogue
from django_evolink.evolink import url_policy as netsafety
from django_evolink.exceptions import EvolinkValidationError
from tests.conftest import make_image_bytes

SPEC = catalogue.get_spec("wan2.5-image-to-image")
URL = "https://example.com/a.png"


def errors(**kw):
    kw.setdefault("prompt", "p")
    kw.setdefault("image_urls", [URL])
    try:
        catalogue.validate_request(**kw)
    except EvolinkValidationError as exc:
        return exc.errors
    return {}


@pytest.mark.parametrize(("length", "ok"), [(1, True), (2000, True), (2001, False)])
def test_prompt_length(length, ok):
    assert ("prompt" not in errors(prompt="x" * length)) is ok


@pytest.mark.parametrize("prompt", ["", "   ", None, 5])
def test_prompt_required(prompt):
    assert "A prompt is required" in errors(prompt=prompt)["prompt"][0]


@pytest.mark.parametrize(("n", "ok"), [(0, False), (1, True), (4, True), (5, False),
                                       (True, False), ("2", False), (2.0, False), (None, True)])
def test_n_range(n, ok):
    assert ("n" not in errors(n=n)) is ok


@pytest.mark.parametrize(("count", "message"), [
    (0, "At least 1 image for wan2.5-image-to-image."),
    (1, None), (2, None),
    (3, "At most 2 images for wan2.5-image-to-image."),
])
def test_image_count(count, message):
    got = errors(image_urls=[URL] * count).get("image_urls")
    assert got == ([message] if message else None)


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "example.com/a",
                                 "http://127.0.0.1/a.png", "http://10.0.0.1/a.png",
                                 "http://[::1]/a.png", "http://169.254.169.254/latest",
                                 "http://localhost/a.png", "https://u:p@example.com/a.png",
                                 "https://example.com/" + "a" * 2048])
def test_bad_urls_refused(url):
    assert "image_urls" in errors(image_urls=[url])


def test_private_urls_allowed_by_setting(settings):
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": True}
    assert errors(image_urls=["http://127.0.0.1:8765/a.png"]) == {}


def test_not_a_list():
    assert "image_urls" in errors(image_urls="https://example.com/a.png")


def test_unknown_model_names_allowed_models():
    msg = errors(model="dall-e")["model"][0]
    assert "wan2.5-image-to-image" in msg


def _check(data):
    return catalogue.image_file_errors(SPEC, io.BytesIO(data))


@pytest.mark.parametrize(("w", "h", "ok"), [(384, 384, True), (383, 500, False),
                                            (500, 383, False), (5000, 400, True),
                                            (5001, 400, False)])
def test_image_sides(w, h, ok):
    msgs, info = _check(make_image_bytes(w, h, "JPEG"))
    assert (msgs == []) is ok
    if ok:
        assert info["width"] == w and info["height"] == h and info["content_type"] == "image/jpeg"
    else:
        assert "384" in msgs[0] and "5000" in msgs[0]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP"])
def test_accepted_formats(fmt):
    assert _check(make_image_bytes(400, 400, fmt))[0] == []


def test_gif_refused_by_content():
    msgs, _ = _check(make_image_bytes(400, 400, "GIF"))
    assert "gif" in msgs[0].lower() and "jpeg" in msgs[0]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_transparency_refused(fmt):
    msgs, _ = _check(make_image_bytes(400, 400, fmt, mode="RGBA"))
    assert "transparency" in msgs[0]


def test_palette_png_with_transparency_refused():
    img = Image.new("P", (400, 400))
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    assert "transparency" in _check(buf.getvalue())[0][0]


def test_too_big_file():
    data = make_image_bytes(400, 400, "BMP")
    big = data + b"\0" * (10 * 1024 * 1024 - len(data) + 1)
    msgs, _ = _check(big)
    assert "10 MB" in msgs[0]


def test_truncated_and_garbage():
    data = make_image_bytes(800, 800, "JPEG")
    assert "not a readable image" in _check(data[: len(data) // 2])[0][0]
    assert "not a readable image" in _check(b"GIF89a-not-really")[0][0]
    assert "empty" in _check(b"")[0][0]


def test_huge_declared_dimensions_refused_without_decoding():
    img = Image.new("L", (1, 1))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    data = bytearray(buf.getvalue())
    # patch the IHDR width/height to 60000 x 60000 (CRC now wrong; Pillow reads the header)
    data[16:24] = (60000).to_bytes(4, "big") * 2
    msgs, _ = _check(bytes(data))
    assert msgs


def test_netsafety_public_ip_ok():
    assert netsafety.check_url("https://93.184.216.34/a.png", resolve=False) is None
    assert netsafety.is_private_address("::ffff:127.0.0.1")
    assert netsafety.is_private_address("100.64.1.1")
    assert not netsafety.is_private_address("8.8.8.8")
