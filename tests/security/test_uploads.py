"""Upload attacks: polyglots, SVG/HTML, lying names and types, huge declared dimensions.

What is judged is the content (Pillow), never the file name or the declared type; what
is stored is named by a random UUID with the extension of the detected format.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib

import pytest
from django.core.handlers.wsgi import LimitedStream
from PIL import Image
from rest_framework.test import APIRequestFactory, force_authenticate

from django_evolink import conf
from django_evolink.api.views import TaskListCreateView
from django_evolink.models import ImageTask
from tests.support.api import LIST_URL, image_bytes, upload, upload_calls

pytest_plugins = ["tests.support.api_fixtures"]
# the create throttle counts per user id in the cache, and SQLite reuses ids: start clean
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing", "clear_cache")]

STORED_NAME = re.compile(r"^evolink/inputs/\d{4}/\d{2}/\d{2}/[0-9a-f]{32}\.(png|jpg|bmp|webp)$")


def send(api, name: str, data: bytes, content_type: str = "image/png"):
    return api.post(LIST_URL, {"prompt": "p", "images": [upload(name, data, content_type)]},
                    format="multipart")


def refused(response, rsps) -> str:
    assert response.status_code == 400, response.content
    assert not ImageTask.objects.exists() and not rsps.calls
    return " ".join(response.json()["images"])


def a_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("payload.html", "<script>alert(document.domain)</script>")
    return buf.getvalue()


# -------------------------------------------------------------------- refused by content

GIF_JS = b"GIF89a/*\x01\x00\x01\x00\x00\x00\x00;*/=alert(document.domain);//" + b"\x00" * 64
SVG = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="512" '
       b'height="512"><script>alert(1)</script><rect width="512" height="512"/></svg>')
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"


@pytest.mark.parametrize(
    ("name", "data", "content_type", "fragment"),
    [
        ("cat.gif", GIF_JS, "image/gif", "not a readable image"),
        ("cat.png", GIF_JS, "image/png", "not a readable image"),
        ("real.gif", image_bytes(512, 512, fmt="GIF"), "image/png", "Format GIF"),
        ("cat.svg", SVG, "image/svg+xml", "not a readable image"),
        ("cat.png", SVG, "image/png", "not a readable image"),
        ("cat.png", HTML, "image/png", "not a readable image"),
        ("cat.jpg", b"\xff\xd8\xff\xe0" + HTML, "image/jpeg", "not a readable image"),
        ("cat.png", a_zip(), "image/png", "not a readable image"),
        ("cat.tiff", image_bytes(512, 512, fmt="TIFF"), "image/tiff", "Format TIFF"),
        ("cat.ico", image_bytes(64, 64, fmt="ICO"), "image/png", "Format ICO"),
    ],
    ids=["gif-js polyglot", "gif-js named png", "real gif named png", "svg with script",
         "svg named png", "html named png", "html behind a jpeg magic", "zip named png",
         "tiff", "ico"],
)
def test_non_images_and_other_formats_are_refused_by_content(api, evolink_http, name, data,
                                                             content_type, fragment):
    assert fragment in refused(send(api, name, data, content_type), evolink_http)


def _png_with_size(width: int, height: int) -> bytes:
    data = bytearray(image_bytes(400, 400))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def _jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(image_bytes(400, 400, fmt="JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_png_with_size(100_000, 100_000), "too many pixels"),  # 10 gigapixels
        (_png_with_size(5001, 400), "5000"),
        (_png_with_size(2**31 - 1, 1), "too many pixels"),
        (_jpeg_with_size(65_535, 65_535), "too many pixels"),
        (_jpeg_with_size(5001, 5001), "5000"),
    ],
    ids=["png 100000x100000", "png 5001 wide", "png 2^31 wide", "jpeg 65535x65535",
         "jpeg 5001x5001"],
)
def test_huge_declared_dimensions_are_refused_without_decoding(api, evolink_http, data,
                                                               fragment):
    assert fragment in refused(send(api, "big.png", data), evolink_http)


def test_a_5000px_square_of_one_colour_is_bounded_by_the_side_limit(api, evolink_http):
    """The largest image accepted decodes to 5000 x 5000 x 3 = 75 MB, whatever its
    compressed size (here ~30 kB): the side limit is the memory bound."""
    data = image_bytes(5000, 5000)
    assert len(data) < 200_000
    assert send(api, "big.png", data).status_code == 201


# --------------------------------------------------------- accepted, but never trusted


@pytest.mark.parametrize(
    "name",
    ["evil.php", "evil.html", "evil.svg", "../../../etc/passwd.png", "a\x00.png.html",
     "con.png", "x" * 300 + ".png", ".htaccess"],
)
def test_the_client_file_name_never_reaches_storage_or_evolink(api, evolink_http, name):
    response = send(api, name, image_bytes(), "text/html")
    assert response.status_code == 201, response.content
    (stored,) = ImageTask.objects.get().input_files
    assert STORED_NAME.match(stored) and stored.endswith(".png")
    sent = upload_calls(evolink_http)[0].request.body
    assert b"evil" not in sent and b"passwd" not in sent and b"htaccess" not in sent
    assert b"text/html" not in sent  # the type sent is the detected one


def test_a_png_zip_polyglot_is_accepted_as_png_and_stored_under_a_png_name(api, evolink_http):
    """A valid PNG followed by a ZIP is a valid PNG: it is accepted (refusing trailing
    data would refuse real-world files) and stored as ``<uuid>.png``, so served media
    answers ``image/png``; docs/reliability.md recommends ``nosniff`` for MEDIA_URL."""
    data = image_bytes() + a_zip()
    response = send(api, "cat.png", data)
    assert response.status_code == 201
    (stored,) = ImageTask.objects.get().input_files
    assert STORED_NAME.match(stored) and stored.endswith(".png")
    with conf.storage().open(stored) as f, Image.open(f) as img:
        assert img.format == "PNG"


def test_a_jpeg_with_html_in_a_comment_is_stored_as_jpg(api, evolink_http):
    img = Image.new("RGB", (512, 512), (1, 2, 3))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", comment=HTML)
    response = send(api, "page.html", buf.getvalue(), "text/html")
    assert response.status_code == 201
    assert ImageTask.objects.get().input_files[0].endswith(".jpg")


# -------------------------------------------------------------- bodies refused while read

MB = 1024 * 1024


class CountingStream:
    """A request body of ``total`` bytes: ``head`` then zeros, made as it is read, and
    how many bytes were read."""

    def __init__(self, head: bytes, total: int) -> None:
        self.head, self.total, self.read_bytes = head, total, 0

    def read(self, size: int = -1) -> bytes:
        left = self.total - self.read_bytes
        size = left if size is None or size < 0 else min(size, left)
        start, self.read_bytes = self.read_bytes, self.read_bytes + size
        head = self.head[start:start + size]
        return head + b"\0" * (size - len(head))

    def readline(self, size: int = -1) -> bytes:  # pragma: no cover - not used by multipart
        return self.read(size)


def upload_request(user, stream: CountingStream):
    request = APIRequestFactory().generic(
        "POST", LIST_URL, b"", content_type="multipart/form-data; boundary=BoUnDaRy")
    request.META["CONTENT_LENGTH"] = str(stream.total)
    request._stream = LimitedStream(stream, stream.total)
    force_authenticate(request, user)
    return request


def image_part_head(prompt: bytes = b"p") -> bytes:
    return (b'--BoUnDaRy\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n' + prompt
            + b'\r\n--BoUnDaRy\r\nContent-Disposition: form-data; name="images"; '
            b'filename="big.png"\r\nContent-Type: image/png\r\n\r\n' + image_bytes())


def test_a_huge_declared_upload_is_refused_before_its_body_is_read(user, evolink_http):
    """A 100 MB multipart body: refused from its Content-Length, 0 bytes read (before the
    fix Django received all of it into a temporary file, then the serializer said no)."""
    stream = CountingStream(image_part_head(), 100 * MB)
    response = TaskListCreateView.as_view()(upload_request(user, stream))
    response.render()
    assert response.status_code == 400
    assert "at most 2 images of 10 MB" in " ".join(response.data["images"])
    assert stream.read_bytes == 0
    assert not ImageTask.objects.exists() and not evolink_http.calls


def test_reading_stops_as_soon_as_one_file_passes_ten_megabytes(user, evolink_http):
    """A 15 MB file in an 18 MB body (under the whole-request cap): reading stops just
    past 10 MB, with a 400 naming the file."""
    stream = CountingStream(image_part_head(), 18 * MB)
    response = TaskListCreateView.as_view()(upload_request(user, stream))
    response.render()
    assert response.status_code == 400
    message = " ".join(response.data["images"])
    assert "big.png" in message and "larger than 10 MB" in message
    assert stream.read_bytes < 10 * MB + 256 * 1024, stream.read_bytes
    assert not ImageTask.objects.exists() and not evolink_http.calls
