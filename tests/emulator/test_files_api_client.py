"""The client's files-API calls (base64, URL, list, quota, delete) against the emulator."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from django_evolink.emulator import Emulator
from django_evolink.evolink.client import EvolinkClient
from django_evolink.exceptions import EvolinkAPIError, EvolinkNotFoundError

KEY = "sk-evo-test-0123"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 400), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def emu():
    emulator = Emulator(manual_clock=True, allow_private_urls=True).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def client(emu) -> EvolinkClient:
    client = EvolinkClient(api_key=KEY, base_url=emu.url, files_base_url=emu.url,
                           max_retries=0, sleep=lambda seconds: None)
    yield client
    client.close()


def test_upload_base64_with_and_without_a_name(client):
    named = client.upload_base64(png(), file_name="a.png", content_type="image/png",
                                 upload_path="photos")
    assert named["file_name"] == "a.png" and named["upload_path"] == "photos"
    assert named["mime_type"] == "image/png"
    generated = client.upload_base64(png())
    assert generated["file_name"] and generated["file_name"] != "a.png"
    with pytest.raises(TypeError):
        client.upload_base64("text")  # type: ignore[arg-type]


def test_upload_from_url_fetches_the_file(client):
    first = client.upload_file(png(), file_name="source.png")
    copy = client.upload_from_url(first["file_url"], file_name="copy.png")
    assert copy["file_name"] == "copy.png" and copy["file_size"] == first["file_size"]


def test_list_quota_and_delete(client):
    ids = [client.upload_base64(png(), file_name=f"f{i}.png")["file_id"] for i in range(3)]
    page = client.list_files(page=1, page_size=2)
    assert page["total"] == 3 and len(page["files"]) == 2
    quota = client.get_files_quota()
    assert quota["used_files"] == 3 and quota["remaining_files"] == quota["max_files"] - 3
    assert client.delete_file(ids[0])["file_id"] == ids[0]
    assert client.get_files_quota()["used_files"] == 2
    with pytest.raises(EvolinkAPIError) as caught:
        client.delete_file(ids[0])
    assert isinstance(caught.value, EvolinkNotFoundError)
    with pytest.raises(ValueError):
        client.list_files(page=0)
    with pytest.raises(ValueError):
        client.delete_file("")
