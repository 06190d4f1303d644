"""SSRF through result URLs: the download never reaches a private address.

Two local HTTP servers play the parts: a *redirector* on 127.0.0.2 standing for a public
image host (its name, ``cdn.public.test``, resolves to 127.0.0.2, which the address check
is told to treat as public) and a *secret* service on 127.0.0.1 that must never receive a
request. ``ALLOW_PRIVATE_URLS`` is False throughout.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from django_evolink.background import downloads
from django_evolink.evolink import addresses
from django_evolink.evolink import url_policy as netsafety
from django_evolink.models import GeneratedImage, ImageTask, Status
from tests.conftest import make_image_bytes

pytestmark = [pytest.mark.django_db]

PUBLIC_NAME = "cdn.public.test"  # resolves to 127.0.0.2, the stand-in public address
STAND_IN_PUBLIC_IP = "127.0.0.2"
PRIVATE_NAME = "intranet.public.test"  # resolves to 127.0.0.1: must be refused
REBIND_NAME = "rebind.public.test"  # public when checked, 127.0.0.1 when connected


class _Server:
    def __init__(self, handler, host="127.0.0.1"):
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                outer.hits.append(self.path)
                handler(self)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers(settings, monkeypatch):
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": False}
    png = make_image_bytes(64, 64)

    def secret(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(len(png)))
        handler.end_headers()
        handler.wfile.write(png)

    secret_server = _Server(secret)
    targets: dict[str, str] = {}

    def redirect(handler):
        key = handler.path.lstrip("/")
        if key == "image.png":
            secret(handler)
            return
        handler.send_response(302)
        handler.send_header("Location", targets.get(key, "/loop"))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    redirector = _Server(redirect, STAND_IN_PUBLIC_IP)
    real_getaddrinfo = socket.getaddrinfo
    rebind_calls = {"n": 0}

    def fake_getaddrinfo(host, *args, **kwargs):
        if host == PUBLIC_NAME:
            return real_getaddrinfo(STAND_IN_PUBLIC_IP, *args, **kwargs)
        if host == PRIVATE_NAME:
            return real_getaddrinfo("127.0.0.1", *args, **kwargs)
        if host == REBIND_NAME:
            rebind_calls["n"] += 1
            ip = "93.184.215.14" if rebind_calls["n"] == 1 else "127.0.0.1"
            return real_getaddrinfo(ip, *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    real_is_private = netsafety.is_private_address

    def is_private_address(address):
        if address == STAND_IN_PUBLIC_IP:
            return False  # stands for a public CDN's address
        return real_is_private(address)

    # where it is looked up: the URL check (addresses) and the connected peer's (netsafety)
    monkeypatch.setattr(addresses, "is_private_address", is_private_address)
    monkeypatch.setattr(netsafety, "is_private_address", is_private_address)
    try:
        yield {"secret": secret_server, "redirector": redirector, "targets": targets,
               "public": f"http://{PUBLIC_NAME}:{redirector.port}"}
    finally:
        secret_server.stop()
        redirector.stop()


def private_forms(port: int) -> dict[str, str]:
    """Ways of writing a loopback/link-local/private address in a URL."""
    return {
        "loopback": f"http://127.0.0.1:{port}/secret",
        "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "ipv4-mapped ipv6": f"http://[::ffff:127.0.0.1]:{port}/secret",
        "ipv6 loopback": f"http://[::1]:{port}/secret",
        "decimal": f"http://2130706433:{port}/secret",
        "hex": f"http://0x7f000001:{port}/secret",
        "octal": f"http://0177.0.0.1:{port}/secret",
        "short": f"http://127.1:{port}/secret",
        "unspecified": f"http://0.0.0.0:{port}/secret",
        "localhost": f"http://localhost:{port}/secret",
        "localhost subdomain": f"http://a.localhost:{port}/secret",
        "private 10/8": "http://10.0.0.1/secret",
        "private 192.168/16": "http://192.168.1.1/secret",
        "carrier-grade nat": "http://100.64.0.1/secret",
        "name resolving to loopback": f"http://{PRIVATE_NAME}:{port}/secret",
        "trailing dot": f"http://localhost.:{port}/secret",
        "file scheme": "file:///etc/passwd",
        "gopher scheme": f"gopher://127.0.0.1:{port}/_secret",
        "ftp scheme": "ftp://93.184.215.14/secret",
        "data scheme": "data:image/png;base64,iVBORw0KGgo=",
        "credentials": f"http://user:pw@{PUBLIC_NAME}/secret",
    }


FORMS = list(private_forms(1))


@pytest.mark.parametrize("form", FORMS)
def test_a_private_result_url_is_refused_before_connecting(servers, form):
    url = private_forms(servers["secret"].port)[form]
    with pytest.raises(downloads.DownloadError) as caught:
        downloads.fetch_image(url)
    assert caught.value.permanent
    assert "Refused to download" in str(caught.value)
    assert servers["secret"].hits == []


@pytest.mark.parametrize("form", FORMS)
def test_a_redirect_to_a_private_address_is_refused(servers, form):
    servers["targets"]["go"] = private_forms(servers["secret"].port)[form]
    with pytest.raises(downloads.DownloadError) as caught:
        downloads.fetch_image(servers["public"] + "/go")
    assert caught.value.permanent and "Refused to download" in str(caught.value)
    assert servers["redirector"].hits == ["/go"]  # the public hop, nothing else
    assert servers["secret"].hits == []


def test_the_public_stand_in_itself_downloads(servers):
    """Control: the harness lets a genuinely public URL through."""
    buf, info = downloads.fetch_image(servers["public"] + "/image.png")
    buf.close()
    assert info["width"] == 64


def test_a_redirect_loop_stops_after_five_hops(servers):
    with pytest.raises(downloads.DownloadError) as caught:
        downloads.fetch_image(servers["public"] + "/loop")
    assert "redirects" in str(caught.value) and len(servers["redirector"].hits) == 6


def test_dns_rebinding_between_check_and_connect_is_refused(servers):
    """The name is public when checked and loopback when connected: the connection's
    actual peer address is what counts."""
    url = f"http://{REBIND_NAME}:{servers['secret'].port}/image.png"
    with pytest.raises(downloads.DownloadError) as caught:
        downloads.fetch_image(url)
    assert caught.value.permanent
    assert servers["secret"].hits == []


def test_a_refused_result_is_recorded_on_the_image_and_never_stored(servers):
    task = ImageTask.objects.create(model="wan2.5-image-to-image", prompt="p",
                                    status=Status.COMPLETED, image_urls=["https://93.184.215.14/a.png"],
                                    evolink_id="task-unified-1-ssrf")
    servers["targets"]["go"] = "http://169.254.169.254/latest/meta-data/"
    image = GeneratedImage.objects.create(task=task, index=0, source_url=servers["public"] + "/go")
    assert downloads.download_image(image) == "failed"
    image.refresh_from_db()
    assert not image.file and "private or loopback" in image.download_error
    assert downloads.download_task_images(task.pk)["failed"] == 1  # not retried
    assert servers["redirector"].hits == ["/go"]


# ------------------------------------------------------------------ IPv6-only names (AAAA)

V6_ONLY_NAME = "v6only.public.test"
PRIVATE_AAAA = ["::1", "fc00::1", "fd12:3456::1", "fe80::1", "::ffff:10.0.0.1"]


def aaaa_only(monkeypatch, address: str) -> list[tuple]:
    """Make ``V6_ONLY_NAME`` resolve to ``address`` (an AAAA record) and nothing else: no
    A record, so a check that asks for (or keeps) IPv4 answers only sees no address."""
    calls: list[tuple] = []
    real_getaddrinfo = socket.getaddrinfo

    def fake_getaddrinfo(host, port=None, family=0, *args, **kwargs):
        if host != V6_ONLY_NAME:
            return real_getaddrinfo(host, port, family, *args, **kwargs)
        calls.append((host, family))
        if family not in (0, socket.AF_UNSPEC, socket.AF_INET6):
            raise socket.gaierror(socket.EAI_NONAME, "no A record")
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port or 0, 0, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    return calls


@pytest.mark.parametrize("address", PRIVATE_AAAA)
def test_an_image_url_whose_name_has_only_a_private_aaaa_record_is_refused(settings,
                                                                           monkeypatch,
                                                                           address):
    """The URL check of image URLs handed to Evolink (and of result URLs) resolves AAAA
    records too: a name with only ``::1`` or a ``fc00::/7`` address is private."""
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": False}
    calls = aaaa_only(monkeypatch, address)
    problem = netsafety.check_url(f"https://{V6_ONLY_NAME}/photo.png")
    assert problem and "private or loopback" in problem
    assert calls, "the name was not resolved"


@pytest.mark.parametrize("address", PRIVATE_AAAA)
def test_a_result_url_whose_name_has_only_a_private_aaaa_record_is_not_downloaded(
        settings, monkeypatch, address):
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": False}
    aaaa_only(monkeypatch, address)
    with pytest.raises(downloads.DownloadError) as caught:
        downloads.fetch_image(f"http://{V6_ONLY_NAME}/image.png")
    assert caught.value.permanent and "private or loopback" in str(caught.value)
