"""Result downloads: streaming, caps, Pillow, SSRF rules, retries, idempotence, signal."""

from __future__ import annotations

import datetime as dt

import pytest
import responses
from django.utils import timezone

from django_evolink import signals
from django_evolink.background import downloads
from django_evolink.models import GeneratedImage, Status
from tests.conftest import make_image_bytes
from tests.support.background import db_task, emulated_task

pytestmark = pytest.mark.django_db
PUBLIC = "https://93.184.216.34"  # a public address literal: no DNS needed


def _task_with_images(urls: list[str], **extra):
    """A completed task whose results are ``urls``, due for download (``extra``: fields of
    every image)."""
    task = db_task("task-unified-0-" + str(GeneratedImage.objects.count()),
                   status=Status.COMPLETED, next_poll_at=None)
    now = timezone.now()
    for index, url in enumerate(urls):
        fields = {"source_url": url, "source_expires_at": now + dt.timedelta(hours=24),
                  "next_download_at": now, **extra}
        GeneratedImage.objects.create(task=task, index=index, **fields)
    return task


def _image(url: str, **extra) -> GeneratedImage:
    return _task_with_images([url], **extra).images.get()


def test_emulator_results_stored_once_with_signal(evolink_emulator,
                                                  django_capture_on_commit_callbacks):
    remote = emulated_task(evolink_emulator, duration=0.1, n=2)
    evolink_emulator.clock.advance(1)
    task = db_task(remote.id, status=Status.COMPLETED, next_poll_at=None)
    now = timezone.now()
    for i, url in enumerate(remote.result_urls()):
        GeneratedImage.objects.create(task=task, index=i, source_url=url, next_download_at=now,
                                      source_expires_at=now + dt.timedelta(hours=24))
    sent = []
    signals.task_images_stored.connect(lambda task, **kw: sent.append(task.pk), weak=False,
                                       dispatch_uid="t-dl")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            counts = downloads.download_task_images(task.pk)
        with django_capture_on_commit_callbacks(execute=True):
            again = downloads.download_task_images(task.pk, force=True)
    finally:
        signals.task_images_stored.disconnect(dispatch_uid="t-dl")
    assert counts["stored"] == 2 and again == {**again, "already": 2, "stored": 0}
    assert evolink_emulator.requests.count("GET", "/files/results/*") == 2
    images = list(task.images.order_by("index"))
    assert [i.file.name for i in images] == [f"evolink/results/{task.pk}/{i}.png" for i in (0, 1)]
    assert all(i.width and i.height and i.downloaded_at for i in images)
    task.refresh_from_db()
    assert task.images_stored_at is not None and sent == [task.pk]


def test_expired_results_record_a_download_error(evolink_emulator):
    remote = emulated_task(evolink_emulator, duration=0.1)
    evolink_emulator.clock.advance(1)
    evolink_emulator.expire_results(remote.id)
    image = _image(remote.result_urls()[0])
    assert downloads.download_image(image) == "failed"
    image.refresh_from_db()
    assert "404" in image.download_error and not image.file and image.next_download_at is None


@responses.activate
def test_transient_errors_retry_with_backoff_until_the_deadline(settings):
    settings.EVOLINK = {**settings.EVOLINK, "DOWNLOAD_BACKOFF": 60.0}
    responses.get(f"{PUBLIC}/r.png", status=503)
    image = _image(f"{PUBLIC}/r.png")
    assert downloads.download_image(image) == "retry"
    image.refresh_from_db()
    assert image.download_attempts == 1 and image.next_download_at > timezone.now()
    assert downloads.download_image(image) == "busy"  # retry not due yet
    soon = timezone.now() + dt.timedelta(seconds=30)
    GeneratedImage.objects.filter(pk=image.pk).update(next_download_at=timezone.now(),
                                                      source_expires_at=soon)
    image.refresh_from_db()
    assert downloads.download_image(image) == "failed"
    image.refresh_from_db()
    assert "Gave up" in image.download_error and image.download_attempts == 2


@responses.activate
@pytest.mark.parametrize("case", ["too_big_header", "too_big_stream", "not_image", "http_404"])
def test_permanent_failures(settings, case):
    settings.EVOLINK = {**settings.EVOLINK, "DOWNLOAD_MAX_BYTES": 1000}
    url = f"{PUBLIC}/r.png"
    if case == "too_big_header":
        responses.get(url, body=b"x" * 10, headers={"Content-Length": "5000"})
    elif case == "too_big_stream":
        responses.get(url, body=make_image_bytes(600, 600))
    elif case == "not_image":
        responses.get(url, body=b"<html>hello</html>")
    else:
        responses.get(url, status=404)
    image = _image(url)
    assert downloads.download_image(image) == "failed"
    image.refresh_from_db()
    assert image.download_error and image.download_attempts == 1


@responses.activate
def test_redirects_followed_and_each_hop_checked(settings):
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": False}
    png = make_image_bytes(400, 300)
    responses.get(f"{PUBLIC}/a.png", status=302, headers={"Location": "/b.png"})
    responses.get(f"{PUBLIC}/b.png", body=png, content_type="image/png")
    image = _image(f"{PUBLIC}/a.png")
    assert downloads.download_image(image) == "stored"
    image.refresh_from_db()
    assert (image.width, image.height) == (400, 300)
    responses.get(f"{PUBLIC}/evil.png", status=302,
                  headers={"Location": "http://169.254.169.254/latest/meta-data"})
    evil = _image(f"{PUBLIC}/evil.png")
    assert downloads.download_image(evil) == "failed"
    evil.refresh_from_db()
    assert "private" in evil.download_error
    assert len(responses.calls) == 3  # the metadata address was never requested


def test_only_http_and_no_private_addresses(settings):
    settings.EVOLINK = {**settings.EVOLINK, "ALLOW_PRIVATE_URLS": False}
    for url in ("ftp://93.184.216.34/r.png", "http://127.0.0.1:9/r.png", "http://10.0.0.1/r.png"):
        image = _image(url)
        assert downloads.download_image(image) == "failed", url


@responses.activate
def test_two_workers_racing_store_one_file():
    responses.get(f"{PUBLIC}/r.png", body=make_image_bytes(400, 400))
    image = _image(f"{PUBLIC}/r.png")
    stale = GeneratedImage.objects.get(pk=image.pk)  # the second worker read the same row
    assert downloads.download_image(image) == "stored"
    assert downloads.download_image(stale) in ("already", "busy")
    assert len(responses.calls) == 1
    # a worker whose claim expired still stores one file, at the deterministic path
    from django_evolink import conf

    GeneratedImage.objects.filter(pk=image.pk).update(file="")
    image.refresh_from_db()
    assert downloads.download_image(image, force=True) == "stored"
    storage = conf.storage()
    _, files = storage.listdir(f"evolink/results/{image.task_id}")
    assert files == ["0.png"]


def _noisy(fmt: str, side: int = 200) -> bytes:
    return make_image_bytes(side, side, fmt, noisy=True)


def _flip_middle_byte(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 0xFF
    return bytes(damaged)


@responses.activate
@pytest.mark.parametrize("case", ["png cut before IEND", "png with a damaged byte",
                                  "jpeg cut mid-scan", "webp cut"])
def test_a_damaged_image_served_whole_is_refused_as_corrupt(case):
    """The transport sees nothing wrong (Content-Length matches what is sent): the image
    check reads the whole content (PNG: every chunk's CRC; JPEG: every scan)."""
    data = {
        "png cut before IEND": lambda: _noisy("PNG")[:-40],
        "png with a damaged byte": lambda: _flip_middle_byte(_noisy("PNG")),
        "jpeg cut mid-scan": lambda: _noisy("JPEG")[: len(_noisy("JPEG")) // 2],
        "webp cut": lambda: _noisy("WEBP")[:-200],
    }[case]()
    responses.get(f"{PUBLIC}/r.img", body=data)
    image = _image(f"{PUBLIC}/r.img")
    assert downloads.download_image(image) == "retry"
    image.refresh_from_db()
    assert not image.file
    assert image.download_attempts == 1 and image.next_download_at > timezone.now()


@responses.activate
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_an_intact_photo_like_image_is_stored_with_its_size(fmt):
    responses.get(f"{PUBLIC}/r.img", body=_noisy(fmt, side=123))
    image = _image(f"{PUBLIC}/r.img")
    assert downloads.download_image(image) == "stored"
    image.refresh_from_db()
    assert (image.width, image.height) == (123, 123)
    assert image.file.name.endswith({"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}[fmt])


def _completed_task_with_images(count: int):
    return _task_with_images([f"{PUBLIC}/r{index}.png" for index in range(count)])


def test_the_images_of_a_task_are_fetched_side_by_side(monkeypatch):
    """Three fetches meet at a barrier: fetched one after the other, the first would wait
    for the others forever (the barrier times out); side by side, all three pass it."""
    import threading

    barrier = threading.Barrier(3, timeout=10)
    fetch = downloads.fetch_image

    def meeting_fetch(url):
        barrier.wait()
        return fetch(url)

    with responses.RequestsMock() as mocked:
        for index in range(3):
            mocked.get(f"{PUBLIC}/r{index}.png", body=make_image_bytes(10 + index, 10))
        monkeypatch.setattr(downloads, "fetch_image", meeting_fetch)
        task = _completed_task_with_images(3)
        counts = downloads.download_task_images(task.pk)
    assert counts["stored"] == 3
    task.refresh_from_db()
    assert task.images_stored_at is not None
    assert sorted(i.width for i in task.images.all()) == [10, 11, 12]


def test_fetch_errors_of_parallel_downloads_are_in_the_jobs_language(monkeypatch):
    from django.utils import translation

    with responses.RequestsMock() as mocked:
        for index in range(2):
            mocked.get(f"{PUBLIC}/r{index}.png", status=404)
        task = _completed_task_with_images(2)
        with translation.override("ja"):
            counts = downloads.download_task_images(task.pk)
    assert counts["failed"] == 2
    errors = {image.download_error for image in task.images.all()}
    assert errors == {"画像のリンクが HTTP 404 を返しました。"}


def test_a_downloaded_file_is_moved_into_a_file_system_storage_and_no_temp_file_stays(
        settings, tmp_path, monkeypatch):
    from django.core.files.storage import filesystem

    temp_dir = tmp_path / "upload-temp"
    temp_dir.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(temp_dir)
    moved = []
    move = filesystem.file_move_safe

    def spied_move(old, new, *args, **kwargs):
        moved.append((old, new))
        return move(old, new, *args, **kwargs)

    monkeypatch.setattr(filesystem, "file_move_safe", spied_move)
    with responses.RequestsMock() as mocked:
        mocked.get(f"{PUBLIC}/r0.png", body=_noisy("PNG"))
        mocked.get(f"{PUBLIC}/r1.png", body=b"<html>not an image</html>")
        task = _completed_task_with_images(2)
        counts = downloads.download_task_images(task.pk)
    assert counts["stored"] == 1 and counts["failed"] == 1
    stored = task.images.get(index=0)
    # the temporary file itself became the stored one (moved, not copied)
    [(old, new)] = moved
    assert old.startswith(str(temp_dir)) and new == stored.file.path
    assert list(temp_dir.iterdir()) == []  # moved (stored) or deleted (refused)
