"""Result downloads are bounded in pixels and in time, whatever the image host sends.

- A 13000x13000 PNG is a few hundred KB (under ``DOWNLOAD_MAX_BYTES`` and under Pillow's
  decompression-bomb limit) but decodes to 169 MB or more: its dimensions are judged
  from the header, before anything is decoded (``DOWNLOAD_MAX_PIXELS``).
- ``DOWNLOAD_TIMEOUT`` used to bound each socket read only, so a host sending one byte
  every 0.2 s never tripped it; the whole download of an image now ends within
  ``CONNECT_TIMEOUT + DOWNLOAD_TIMEOUT``.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from django_evolink.background import downloads
from tests.conftest import make_image_bytes

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def huge_png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of ``width`` x ``height`` zero pixels, compressed row by row
    (never held in memory as pixels)."""
    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + one byte per pixel
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


class Server:
    """A local image host whose ``handler(request)`` writes the answer."""

    def __init__(self, handler) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                handler(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/image.png"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(settings):
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": True}
    servers: list[Server] = []

    def start(handler) -> str:
        servers.append(Server(handler))
        return servers[-1].url

    yield start
    for server in servers:
        server.stop()


def send_bytes(data: bytes):
    def handler(request):
        request.send_response(200)
        request.send_header("Content-Type", "image/png")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    return handler


def test_a_huge_png_under_the_byte_and_bomb_limits_is_refused_before_decoding(
        serve, monkeypatch):
    data = huge_png(13000, 13000)
    assert len(data) < 1024 * 1024  # a few hundred KB for 169 million pixels
    assert Image.MAX_IMAGE_PIXELS * 2 > 13000 * 13000  # Pillow alone would decode it
    decoded = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load",
                        lambda self, *a, **k: decoded.append(self.size) or real_load(self))
    with pytest.raises(downloads.DownloadError) as caught:
        downloads.fetch_image(serve(send_bytes(data)))
    assert caught.value.permanent
    assert "13000x13000" in str(caught.value) and "DOWNLOAD_MAX_PIXELS" in str(caught.value)
    assert decoded == []


def test_the_pixel_cap_is_a_setting_and_images_within_it_are_stored(serve, settings):
    url = serve(send_bytes(make_image_bytes(600, 500)))
    buf, info = downloads.fetch_image(url)
    buf.close()
    assert (info["width"], info["height"]) == (600, 500)
    settings.EVOLINK = {**settings.EVOLINK, "DOWNLOAD_MAX_PIXELS": 600 * 500 - 1}
    with pytest.raises(downloads.DownloadError, match="DOWNLOAD_MAX_PIXELS"):
        downloads.fetch_image(url)


def drip(interval: float, total: int = 10_000, stop_after: float = 15.0):
    """A host that promises ``total`` bytes and sends one every ``interval`` seconds (for
    at most ``stop_after`` seconds, so a test without the deadline ends too)."""
    def handler(request):
        request.send_response(200)
        request.send_header("Content-Type", "image/png")
        request.send_header("Content-Length", str(total))
        request.end_headers()
        started = time.monotonic()
        try:
            for _ in range(total):
                if time.monotonic() - started > stop_after:
                    return
                request.wfile.write(b"\0")
                request.wfile.flush()
                time.sleep(interval)
        except OSError:  # the client gave up: what the deadline is for
            return

    return handler


def test_a_byte_a_fifth_of_a_second_drip_ends_at_connect_plus_read_timeout(serve, settings):
    """Each byte arrives well within the 1 s read timeout; the download as a whole is
    cut at CONNECT_TIMEOUT + DOWNLOAD_TIMEOUT = 1.5 s (before the fix: 15 s here, and
    2,000 s for the 10,000 bytes promised)."""
    settings.EVOLINK = {**settings.EVOLINK, "CONNECT_TIMEOUT": 0.5, "DOWNLOAD_TIMEOUT": 1.0}
    url = serve(drip(0.2))
    started = time.monotonic()
    with pytest.raises(downloads.DownloadError) as caught:
        downloads.fetch_image(url)
    elapsed = time.monotonic() - started
    assert not caught.value.permanent  # a slow host may be faster later: retried
    assert "took longer than 1.5 seconds" in str(caught.value)
    assert 1.0 <= elapsed < 2.5, elapsed


def test_a_stalled_host_still_trips_the_read_timeout(serve, settings):
    settings.EVOLINK = {**settings.EVOLINK, "CONNECT_TIMEOUT": 0.5, "DOWNLOAD_TIMEOUT": 0.5}
    url = serve(drip(5.0, stop_after=6.0))
    started = time.monotonic()
    with pytest.raises(downloads.DownloadError) as caught:
        downloads.fetch_image(url)
    assert not caught.value.permanent
    assert time.monotonic() - started < 1.5
