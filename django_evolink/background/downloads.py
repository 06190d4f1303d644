"""Copy result images from Evolink's short-lived links into the site's storage.

Evolink's result URLs work for 24 hours. :func:`download_task_images` (run by a django-q2
worker, enqueued on commit when a task completes, and re-enqueued by the sweep when a
retry is due or a job was lost) stores each image once:

- only ``http(s)``; every hop of a redirect is checked with :func:`url_policy.check_url`
  (private/loopback addresses refused unless ``ALLOW_PRIVATE_URLS``), and the address
  each connection actually reached is checked again before the request is sent (a name
  that resolves to a private address only when connecting: DNS rebinding); redirects are
  followed by hand, at most :data:`MAX_REDIRECTS`;
- streamed to a temporary file on disk (bounded memory; in ``FILE_UPLOAD_TEMP_DIR``, as
  Django keeps large uploads, so a file-system storage moves it into place rather than
  copying it), refused above
  ``DOWNLOAD_MAX_BYTES``; the whole download of one image (every hop, every read) must
  end within ``CONNECT_TIMEOUT + DOWNLOAD_TIMEOUT`` seconds, so a server dripping
  bytes cannot hold a worker (each read is bounded by what is left of that deadline);
- its dimensions are read from the header and refused above ``DOWNLOAD_MAX_PIXELS``
  before anything is decoded (a small file can declare a huge image); then the whole
  content is checked without drawing it at full size (a PNG's every chunk against its
  CRC up to ``IEND``, as its bytes arrive (:mod:`.png_chunks`); :func:`check_content`: a
  JPEG's every scan decoded at 1/8 scale, other formats decoded), so a truncated or
  corrupt file is refused;
- the images of one task are fetched side by side (at most :data:`PARALLEL_DOWNLOADS`
  at once, in threads that touch no database), then stored one after the other;
- saved at the deterministic path of :func:`models.result_upload_to`;
- idempotent: an image already stored is never downloaded again; an attempt first
  claims the image (compare-and-set on ``next_download_at``), and the file is recorded
  with a conditional UPDATE, so two workers racing store one file;
- a failure that may pass (connection error, 5xx, 429, truncated body) is retried with
  exponential backoff (``DOWNLOAD_BACKOFF`` .. ``DOWNLOAD_BACKOFF_MAX``) until the link
  would have expired (``source_expires_at`` / ``DOWNLOAD_RETRY_HOURS``); a failure that
  will not (4xx, not an image, too large, refused address) or the deadline records
  ``download_error`` on the image.

``task_images_stored`` is sent once per task when all its images are stored
(``ImageTask.images_stored_at`` set by a conditional UPDATE).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import urljoin

import requests
from django.core.files import File
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as URLLib3Error

from .. import conf, signals
from ..core import live
from ..core.models import GeneratedImage, ImageTask, Status, result_upload_to
from ..evolink import url_policy
from . import queue
from .png_chunks import PngChunkCheck

logger = logging.getLogger("django_evolink.downloads")

#: Redirect hops followed before giving up.
MAX_REDIRECTS = 5
#: Images of one task fetched at the same time (each in its own thread).
PARALLEL_DOWNLOADS = 4
#: Image formats accepted from Evolink, with the extension of the stored file.
FORMAT_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
_CHUNK = 64 * 1024
USER_AGENT = "django-evolink (result download)"


class DownloadError(Exception):
    """A failed download; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


# ----------------------------------------------------------------------------- fetching


class PrivatePeerError(Exception):
    """The connection reached a private address although the name was checked as public
    (DNS rebinding between the check and the connection)."""


class _PeerCheckMixin:
    """Checks the address a connection actually reached, before anything is sent."""

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        if not conf.get("ALLOW_PRIVATE_URLS"):
            try:
                peer = sock.getpeername()[0]
            except OSError:
                peer = ""
            if url_policy.is_private_address(str(peer)):
                sock.close()
                raise PrivatePeerError(peer)
        return sock


class _CheckedHTTPConnection(_PeerCheckMixin, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_PeerCheckMixin, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class PeerCheckingAdapter(HTTPAdapter):
    """A requests adapter whose direct connections refuse private peers (a proxy the
    site configured, e.g. HTTPS_PROXY, is the site's own egress choice and is not checked)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPPool, "https": _CheckedHTTPSPool,
        }


class _Deadline:
    """The one deadline of an image's whole download: ``CONNECT_TIMEOUT +
    DOWNLOAD_TIMEOUT`` seconds from its start, over every hop and every read."""

    def __init__(self) -> None:
        self.connect = float(conf.get("CONNECT_TIMEOUT"))
        self.read = float(conf.get("DOWNLOAD_TIMEOUT"))
        self.total = self.connect + self.read
        self.at = time.monotonic() + self.total

    def left(self) -> float:
        """Seconds left; raises a transient :class:`DownloadError` once none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise DownloadError(
                gettext("The download took longer than %(total)g seconds "
                        "(EVOLINK['CONNECT_TIMEOUT'] + EVOLINK['DOWNLOAD_TIMEOUT']).")
                % {"total": self.total},
                permanent=False,
            )
        return left

    def timeouts(self) -> tuple[float, float]:
        """``(connect, read)`` timeouts of the next request, within the deadline."""
        left = self.left()
        return min(self.connect, left), min(self.read, left)


def _get(session: requests.Session, url: str, deadline: _Deadline) -> requests.Response:
    try:
        return session.get(url, stream=True, allow_redirects=False, timeout=deadline.timeouts(),
                           headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
    except PrivatePeerError:
        raise DownloadError(
            gettext("Refused to download: %(why)s")
            % {"why": gettext("the host resolved to a private or loopback address when "
                              "connecting (DNS rebinding).")},
            permanent=True,
        )
    except requests.RequestException as exc:
        raise DownloadError(
            gettext("The download failed (%(error)s).") % {"error": type(exc).__name__},
            permanent=isinstance(exc, (requests.exceptions.InvalidURL,
                                       requests.exceptions.InvalidSchema,
                                       requests.exceptions.MissingSchema)),
        )


def _chunks(response: requests.Response, deadline: _Deadline) -> Iterator[bytes]:
    """The body as it arrives: one socket read per chunk, each bounded by
    ``DOWNLOAD_TIMEOUT`` and by what is left of the deadline (a socket timeout alone
    bounds one read, so a server sending a byte a second would never trip it)."""
    raw = response.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    while True:
        left = deadline.left()
        if sock is not None:
            sock.settimeout(min(deadline.read, left))
        chunk = raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            return
        yield chunk


def _read_capped(response: requests.Response, max_bytes: int, deadline: _Deadline,
                 check: PngChunkCheck) -> TemporaryUploadedFile:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise DownloadError(
            gettext("The image is %(size)d bytes; at most %(max)d bytes "
                    "(EVOLINK['DOWNLOAD_MAX_BYTES']) are allowed.")
            % {"size": int(length), "max": max_bytes},
            permanent=True,
        )
    # Django's own temporary file: storages move it (``temporary_file_path``) and its
    # close() does not mind that it was moved
    buf = TemporaryUploadedFile("download", "application/octet-stream", 0, None)
    total = 0
    try:
        for chunk in _chunks(response, deadline):
            total += len(chunk)
            if total > max_bytes:
                raise DownloadError(
                    gettext("The image is larger than %(max)d bytes "
                            "(EVOLINK['DOWNLOAD_MAX_BYTES']).") % {"max": max_bytes},
                    permanent=True,
                )
            buf.write(chunk)
            check.feed(chunk)
    except (requests.RequestException, URLLib3Error, OSError) as exc:
        buf.close()
        raise DownloadError(
            gettext("The download was interrupted (%(error)s).") % {"error": type(exc).__name__},
            permanent=False,
        )
    except DownloadError:
        buf.close()
        raise
    if length and length.isdigit() and total < int(length):
        buf.close()
        raise DownloadError(gettext("The download was cut short."), permanent=False)
    buf.seek(0)
    return buf


def fetch_image(url: str) -> tuple[TemporaryUploadedFile, dict[str, Any]]:
    """Download ``url`` under the rules of this module.

    Returns ``(file, info)`` with ``info`` = ``{"format", "extension", "width",
    "height", "size"}``; the caller closes the file. Raises :class:`DownloadError`.
    """
    max_bytes = int(conf.get("DOWNLOAD_MAX_BYTES"))
    deadline = _Deadline()
    check = PngChunkCheck()  # a PNG's chunks, checked as they arrive
    with requests.Session() as session:
        session.mount("http://", PeerCheckingAdapter())
        session.mount("https://", PeerCheckingAdapter())
        for _hop in range(MAX_REDIRECTS + 1):
            problem = url_policy.check_url(url, schemes=("http", "https"))
            if problem:
                raise DownloadError(gettext("Refused to download: %(why)s") % {"why": problem},
                                    permanent=True)
            response = _get(session, url, deadline)
            with response:
                if response.is_redirect:
                    location = response.headers.get("Location") or ""
                    if not location:
                        raise DownloadError(gettext("A redirect without a Location header."),
                                            permanent=True)
                    url = urljoin(url, location)
                    continue
                status = response.status_code
                if status != 200:
                    transient = status in (408, 425, 429) or status >= 500
                    raise DownloadError(
                        gettext("The image link answered HTTP %(status)d.") % {"status": status},
                        permanent=not transient,
                    )
                buf = _read_capped(response, max_bytes, deadline, check)
                break
        else:
            raise DownloadError(
                gettext("More than %(n)d redirects.") % {"n": MAX_REDIRECTS}, permanent=True
            )
    if check.is_png and (problem := check.problem()):
        logger.debug("downloaded PNG refused: %s", problem)
        buf.close()
        raise DownloadError(gettext("The image is truncated or corrupt."), permanent=False)
    size = buf.seek(0, 2)
    buf.seek(0)
    max_pixels = int(conf.get("DOWNLOAD_MAX_PIXELS"))
    try:
        with Image.open(buf) as img:
            fmt = (img.format or "").upper()
            width, height = img.size
            if fmt not in FORMAT_EXTENSIONS:
                raise DownloadError(
                    gettext("The file is a %(fmt)s image; allowed: %(allowed)s.")
                    % {"fmt": fmt or "unknown", "allowed": ", ".join(sorted(FORMAT_EXTENSIONS))},
                    permanent=True,
                )
            if width * height > max_pixels:
                # judged from the header: a few hundred KB can declare gigabytes of pixels
                raise DownloadError(
                    gettext("The image is %(w)dx%(h)d px (%(got)d pixels); at most "
                            "%(max)d pixels (EVOLINK['DOWNLOAD_MAX_PIXELS']) are decoded.")
                    % {"w": width, "h": height, "got": width * height, "max": max_pixels},
                    permanent=True,
                )
            check_content(img)
    except DownloadError:
        buf.close()
        raise
    except Image.DecompressionBombError:
        buf.close()
        raise DownloadError(gettext("The image has too many pixels to be decoded safely."),
                            permanent=True)
    except UnidentifiedImageError:
        buf.close()
        raise DownloadError(gettext("The file is not an image."), permanent=True)
    except (OSError, SyntaxError, ValueError):
        buf.close()
        raise DownloadError(gettext("The image is truncated or corrupt."), permanent=False)
    buf.seek(0)
    return buf, {"format": fmt, "extension": FORMAT_EXTENSIONS[fmt], "width": width,
                 "height": height, "size": size}


def check_content(img: Image.Image) -> None:
    """Read the whole of a just-downloaded image, raising ``OSError``/``SyntaxError`` when
    it is truncated or corrupt, at a fraction of the cost of decoding it: a JPEG is decoded
    at 1/8 scale (every scan is still read and entropy-decoded); other formats are decoded.
    A PNG needs nothing more: its chunks were checked against their CRCs up to ``IEND`` as
    its bytes arrived (:mod:`.png_chunks`, in :func:`fetch_image`)."""
    if img.format == "PNG":
        return
    if img.format == "JPEG":
        img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
        img.load()
    else:
        img.load()


# ----------------------------------------------------------------------------- storing


def download_deadline(image: GeneratedImage) -> datetime:
    """The last moment a download of ``image`` is worth trying."""
    deadline = image.created_at + timedelta(hours=float(conf.get("DOWNLOAD_RETRY_HOURS")))
    if image.source_expires_at is not None:
        deadline = min(deadline, image.source_expires_at)
    return deadline


def can_download(image: GeneratedImage, now: datetime | None = None) -> bool:
    """Whether Evolink's link to ``image`` can still be fetched and is worth a try: it has
    one and :func:`download_deadline` (``source_expires_at`` / ``DOWNLOAD_RETRY_HOURS``)
    has not passed."""
    return bool(image.source_url) and download_deadline(image) > (now or timezone.now())


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones (jittered +-25 %)."""
    base = float(conf.get("DOWNLOAD_BACKOFF")) * (2 ** max(0, min(attempts - 1, 30)))
    return min(float(conf.get("DOWNLOAD_BACKOFF_MAX")), base) * random.uniform(0.75, 1.25)


def _claim(image: GeneratedImage, now: datetime) -> bool:
    lease = timedelta(seconds=float(conf.get("DOWNLOAD_LEASE_SECONDS")))
    return bool(GeneratedImage.objects.filter(
        pk=image.pk, file="", next_download_at=image.next_download_at,
        download_attempts=image.download_attempts,
    ).update(next_download_at=now + lease))


class Fetched(NamedTuple):
    """What fetching one claimed image gave: the name it was saved under in storage, or
    (when a file already stood at its path) the downloaded file to decide about."""

    info: dict[str, Any]
    saved: str | None = None
    buf: File | None = None


def _fetch(image: GeneratedImage) -> Fetched | DownloadError:
    """Download ``image`` and save it at its deterministic path. No database work: this
    runs in a thread of its own when a task has several images."""
    try:
        buf, info = fetch_image(image.source_url)
    except DownloadError as exc:
        return exc
    name = result_upload_to(image, f"{image.index}.{info['extension']}")
    storage = conf.storage()
    if storage.exists(name):  # recorded by another worker, or left by a dead attempt
        return Fetched(info, buf=buf)
    try:
        return Fetched(info, saved=storage.save(name, buf))
    finally:
        buf.close()


def _fetch_all(images: Sequence[GeneratedImage]) -> list[Fetched | DownloadError]:
    """:func:`_fetch` of each image, side by side."""
    if len(images) <= 1:
        return [_fetch(image) for image in images]
    language = translation.get_language()

    def fetch(image: GeneratedImage) -> Fetched | DownloadError:
        with translation.override(language):  # the job's language, not the thread's default
            return _fetch(image)

    with ThreadPoolExecutor(max_workers=min(PARALLEL_DOWNLOADS, len(images)),
                            thread_name_prefix="evolink-download") as pool:
        return list(pool.map(fetch, images))


def _finish(image: GeneratedImage, fetched: Fetched | DownloadError, now: datetime) -> str:
    """Record what fetching a claimed ``image`` gave: the stored file, or the failure."""
    if isinstance(fetched, DownloadError):
        return _record_failure(image, fetched, now)
    if fetched.buf is not None:
        try:
            return _store_over_existing(image, fetched.buf, fetched.info)
        finally:
            fetched.buf.close()
    assert fetched.saved is not None
    return _record_stored(image, fetched.saved, fetched.info)


def _store_over_existing(image: GeneratedImage, buf: File, info: dict[str, Any]) -> str:
    """A file already stands at the image's path: another worker's (recorded: keep it)
    or one left by an attempt that died before recording it (replaced)."""
    storage = conf.storage()
    name = result_upload_to(image, f"{image.index}.{info['extension']}")
    image.refresh_from_db(fields=["file"])
    if image.file:
        return "already"
    storage.delete(name)
    return _record_stored(image, storage.save(name, buf), info)


def _record_stored(image: GeneratedImage, saved: str, info: dict[str, Any]) -> str:
    values = {"file": saved, "width": info["width"], "height": info["height"],
              "downloaded_at": timezone.now(), "next_download_at": None, "download_error": ""}
    written = GeneratedImage.objects.filter(pk=image.pk, file="").update(
        **values, download_attempts=F("download_attempts") + 1)
    if not written:  # another worker recorded the image first: keep its file only
        image.refresh_from_db(fields=["file"])
        if image.file.name != saved:
            conf.storage().delete(saved)
        return "already"
    for name, value in values.items():  # the row as written, without reading it back
        setattr(image, name, value)
    image.download_attempts += 1
    live.announce_change(image.task_id)  # the image's url changed: streams send the task
    return "stored"


def download_image(image: GeneratedImage, *, force: bool = False) -> str:
    """Store one image; returns ``"stored"``, ``"already"`` (stored before),
    ``"busy"`` (another attempt holds it, or its retry is not due), ``"retry"``
    (failed, retry scheduled) or ``"failed"`` (``download_error`` recorded).

    ``force`` tries even when a retry is not due or an error was recorded.
    """
    now = timezone.now()
    result = _take(image, now, force=force)
    if result is not None:
        return result
    return _finish(image, _fetch(image), now)


def _take(image: GeneratedImage, now: datetime, *, force: bool) -> str | None:
    """Claim ``image`` for a download: None when claimed, else why not (the result)."""
    if image.file:
        return "already"
    if not force and image.download_error:
        return "failed"
    if not force and image.next_download_at is not None and image.next_download_at > now:
        return "busy"
    if not _claim(image, now):
        image.refresh_from_db()
        return "already" if image.file else "busy"
    return None


def _record_failure(image: GeneratedImage, exc: DownloadError, now: datetime) -> str:
    attempts = image.download_attempts + 1
    next_at = now + timedelta(seconds=retry_delay(attempts))
    if exc.permanent or next_at >= download_deadline(image):
        message = str(exc)
        if not exc.permanent:
            message = gettext("%(error)s Gave up: the link expires before another try.") % {
                "error": message}
        GeneratedImage.objects.filter(pk=image.pk, file="").update(
            download_error=message[:2000], next_download_at=None, download_attempts=attempts
        )
        logger.warning("task %s image %s: download failed: %s", image.task_id, image.index,
                       message)
        image.refresh_from_db()
        return "failed"
    GeneratedImage.objects.filter(pk=image.pk, file="").update(
        next_download_at=next_at, download_attempts=attempts
    )
    logger.info("task %s image %s: download failed (%s), retry at %s", image.task_id,
                image.index, exc, next_at.isoformat())
    image.refresh_from_db()
    return "retry"


def mark_images_stored(task: ImageTask | Any) -> bool:
    """Set ``images_stored_at`` once all images of the task are stored, and send
    ``task_images_stored`` (once: the UPDATE is conditional). Returns True when sent."""
    task_id = task.pk if isinstance(task, ImageTask) else task
    images = GeneratedImage.objects.filter(task_id=task_id)
    if not images.exists() or images.filter(file="").exists():
        return False
    with transaction.atomic():
        marked = ImageTask.objects.filter(pk=task_id, images_stored_at__isnull=True).update(
            images_stored_at=timezone.now()
        )
        if marked:
            stored = ImageTask.objects.get(pk=task_id)
            transaction.on_commit(
                lambda: signals.task_images_stored.send(sender=ImageTask, task=stored),
                robust=True,
            )
    return bool(marked)


def download_task_images(task_id: Any, *, force: bool = False) -> dict[str, int]:
    """Store every not-yet-stored image of a completed task; returns counts by result
    (``stored``, ``already``, ``busy``, ``retry``, ``failed``)."""
    counts = dict.fromkeys(("stored", "already", "busy", "retry", "failed"), 0)
    task = ImageTask.objects.filter(pk=task_id).first()
    if task is None or task.status != Status.COMPLETED:
        return counts
    now = timezone.now()
    claimed = []
    with transaction.atomic():  # the claims: one commit (no network inside)
        for image in task.images.order_by("index"):
            result = _take(image, now, force=force)
            if result is None:
                claimed.append(image)
            else:
                counts[result] += 1
    fetched = _fetch_all(claimed)  # downloaded and saved side by side
    with transaction.atomic():  # what became of each, and the task's mark: one commit
        for image, outcome in zip(claimed, fetched, strict=True):
            counts[_finish(image, outcome, now)] += 1
        mark_images_stored(task)
    return counts


class RetryRequest(NamedTuple):
    """What :func:`retry_missing_images` did: images not stored, and those scheduled."""

    missing: int
    scheduled: int


def retry_missing_images(task: ImageTask, now: datetime | None = None) -> RetryRequest:
    """Give the not-yet-stored images of a completed task another try, now.

    Each missing image whose link :func:`can_download` loses its recorded failure and
    becomes due (``next_download_at`` = now), exactly the state the sweep re-enqueues
    when a job is lost; its attempt count is kept (the backoff goes on from there).
    Then the task's download job is enqueued. Images past their deadline are left
    alone. A task that is not completed has nothing to retry.
    """
    now = now or timezone.now()
    if task.status != Status.COMPLETED:
        return RetryRequest(0, 0)
    missing = list(GeneratedImage.objects.filter(task=task, file=""))
    due = [image.pk for image in missing if can_download(image, now)]
    if due:
        GeneratedImage.objects.filter(pk__in=due, file="").update(
            download_error="", next_download_at=now
        )
        queue.enqueue_downloads(task.pk)
    return RetryRequest(len(missing), len(due))
