"""Uploaded input images: keep a copy, then turn each into a URL Evolink can fetch.

Files are checked with Pillow first (:func:`django_evolink.catalogue.image_file_errors`,
done by the REST serializer). Then, for each file:

1. a copy is saved in the site's storage (``conf.storage()``) under
   ``EVOLINK['INPUTS_PATH']``, so the admin can still show it after Evolink's 72 h
   expiry of uploaded files;
2. a URL Evolink can fetch is made by the backend named by ``EVOLINK['UPLOAD_BACKEND']``:

   * ``"evolink"`` (default): the file is sent to Evolink's files API
     (``client.upload_file``) and its ``file_url`` is used. Works when the site's media
     is not public (laptops, intranets). Evolink's files API takes jpeg, png, gif and
     webp, so a bmp input is sent as a lossless png (the stored copy is the original).
   * ``"storage"``: the stored copy's own URL, made absolute with
     ``EVOLINK['UPLOAD_URL_BASE']`` or, when that is unset, the current request. Use it
     when the site's media URLs are public.

When a later step fails, the copies saved for this request are deleted again.
"""

from __future__ import annotations

import io
import logging
import uuid
from dataclasses import dataclass, field
from typing import IO, Any

from django.core.files.base import ContentFile
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import conf
from ..evolink.client import get_client
from ..exceptions import EvolinkConfigurationError, EvolinkMalformedResponseError

logger = logging.getLogger("django_evolink.uploads")

#: Backends of ``EVOLINK['UPLOAD_BACKEND']``.
UPLOAD_BACKENDS = ("evolink", "storage")
#: Formats Evolink's files API accepts (others are converted to png for it).
EVOLINK_UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP")
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "WEBP": "webp"}


@dataclass
class PreparedInput:
    """One uploaded input: where its copy is stored and the URL handed to Evolink."""

    storage_name: str
    url: str
    info: dict = field(default_factory=dict)


def _read(fileobj: IO[bytes]) -> bytes:
    fileobj.seek(0)
    data = fileobj.read()
    fileobj.seek(0)
    return data


def storage_name_for(info: dict[str, Any]) -> str:
    """A fresh, unguessable storage name: ``<INPUTS_PATH>/<yyyy>/<mm>/<dd>/<uuid>.<ext>``."""
    ext = _EXTENSIONS.get(str(info.get("format", "")).upper(), "bin")
    prefix = conf.get("INPUTS_PATH").strip("/")
    return f"{prefix}/{timezone.now():%Y/%m/%d}/{uuid.uuid4().hex}.{ext}"


def store_input(fileobj: IO[bytes], info: dict[str, Any]) -> str:
    """Save a copy of ``fileobj`` in the site's storage; return its storage name."""
    return conf.storage().save(storage_name_for(info), ContentFile(_read(fileobj)))


def _absolute_storage_url(name: str, request: Any = None) -> str:
    url = conf.storage().url(name)
    if url.startswith(("http://", "https://")):
        return url
    base = conf.get("UPLOAD_URL_BASE")
    if base:
        return base.rstrip("/") + "/" + url.lstrip("/")
    if request is not None:
        return request.build_absolute_uri(url)
    raise EvolinkConfigurationError(
        _("UPLOAD_BACKEND 'storage' needs absolute media URLs: set EVOLINK['UPLOAD_URL_BASE'] "
          "to the public origin of the site's media (e.g. 'https://www.example.com').")
    )


def _for_evolink(data: bytes, info: dict[str, Any]) -> tuple[bytes, str, str]:
    """Bytes, extension and content type to send to Evolink's files API."""
    fmt = str(info.get("format", "")).upper()
    if fmt in EVOLINK_UPLOAD_FORMATS:
        return data, _EXTENSIONS[fmt], info.get("content_type") or "application/octet-stream"
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        out = io.BytesIO()
        img.convert("RGB").save(out, format="PNG")
    return out.getvalue(), "png", "image/png"


def url_for(name: str, fileobj: IO[bytes], info: dict[str, Any], *, request: Any = None) -> str:
    """A URL Evolink can fetch for the stored input ``name``, by ``UPLOAD_BACKEND``."""
    backend = conf.get("UPLOAD_BACKEND")
    if backend == "storage":
        return _absolute_storage_url(name, request)
    if backend == "evolink":

        data, ext, content_type = _for_evolink(_read(fileobj), info)
        stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        answer = get_client().upload_file(
            data, file_name=f"{stem}.{ext}", content_type=content_type,
            upload_path="django-evolink",
        )
        url = answer.get("file_url") or answer.get("download_url")
        if not isinstance(url, str) or not url:
            raise EvolinkMalformedResponseError(
                "Evolink's upload answer has no file_url.", status=200, body=answer
            )
        return url
    raise EvolinkConfigurationError(
        _("Unknown EVOLINK['UPLOAD_BACKEND'] %(got)r; allowed: %(allowed)s.")
        % {"got": backend, "allowed": ", ".join(UPLOAD_BACKENDS)}
    )


def delete_inputs(names: list[str]) -> None:
    """Delete stored input copies (used when a request fails before its task exists)."""
    storage = conf.storage()
    for name in names:
        try:
            storage.delete(name)
        except Exception:  # pragma: no cover - best effort cleanup
            logger.warning("Could not delete the stored input %s", name, exc_info=True)


def prepare_inputs(
    files: list[tuple[IO[bytes], dict[str, Any]]], *, request: Any = None
) -> list[PreparedInput]:
    """Store a copy of each checked file and get a URL Evolink can fetch for it.

    ``files`` are ``(file, info)`` pairs where ``info`` is what
    :func:`catalogue.image_file_errors` returned for the file. If any step fails, the
    copies already saved are deleted and the error is raised.
    """
    prepared: list[PreparedInput] = []
    stored: list[str] = []
    try:
        for fileobj, info in files:
            name = store_input(fileobj, info)
            stored.append(name)
            prepared.append(PreparedInput(name, url_for(name, fileobj, info, request=request),
                                          dict(info)))
    except BaseException:
        delete_inputs(stored)
        raise
    return prepared
