"""Helpers of the REST API, upload and callback tests (fixtures are imported by name)."""

from __future__ import annotations

import io
from typing import Any

from django.urls import reverse
from PIL import Image

from django_evolink.core import tokens
from django_evolink.models import ImageTask
from tests.support.evolink_samples import TASK_ID

BASE = "https://api.evolink.test"
FILES = "https://files-api.evolink.test"
CREATE_URL = f"{BASE}/v1/images/generations"
UPLOAD_URL = f"{FILES}/api/v1/files/upload/stream"
#: A public address written as an IP literal: accepted without a DNS lookup.
PUBLIC_IMAGE = "https://93.184.215.14/photo.png"
PUBLIC_IMAGE_2 = "https://93.184.215.14/second.png"

LIST_URL = "/evolink/tasks/"


def detail_url(task: Any) -> str:
    return reverse("evolink:task-detail", kwargs={"id": str(getattr(task, "pk", task))})


def refresh_url(task: Any) -> str:
    return reverse("evolink:task-refresh", kwargs={"id": str(getattr(task, "pk", task))})


def task_url(evolink_id: str = TASK_ID) -> str:
    return f"{BASE}/v1/tasks/{evolink_id}"


def set_evolink(settings: Any, **values: Any) -> None:
    """Update settings.EVOLINK (a copy) with ``values``."""
    settings.EVOLINK = {**settings.EVOLINK, **values}


def image_bytes(width: int = 512, height: int = 512, fmt: str = "PNG", mode: str = "RGB",
                pad_to: int | None = None) -> bytes:
    color: Any = (200, 80, 40, 128) if mode in ("RGBA",) else (200, 80, 40)
    if mode == "LA":
        color = (100, 128)
    if mode == "L":
        color = 100
    buf = io.BytesIO()
    Image.new(mode, (width, height), color).save(buf, format=fmt)
    data = buf.getvalue()
    if pad_to is not None:
        assert len(data) <= pad_to
        data += b"\0" * (pad_to - len(data))
    return data


def upload(name: str, data: bytes, content_type: str = "image/png") -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type=content_type)


def make_task(user: Any = None, *, status: str = "processing", evolink_id: str = TASK_ID,
              **fields: Any) -> tuple[ImageTask, str]:
    """A submitted task with a callback token; returns ``(task, raw token)``."""
    raw, token_hash = tokens.new_token()
    fields.setdefault("callback_token_hash", token_hash)
    task = ImageTask.objects.create(
        user=user, model="wan2.5-image-to-image", prompt="make it blue",
        image_urls=[PUBLIC_IMAGE], n=1, status=status, evolink_id=evolink_id, **fields,
    )
    return task, raw


def callback_path(raw: str) -> str:
    return reverse("evolink:callback", kwargs={"token": raw})


def create_calls(rsps: Any) -> list[Any]:
    return [c for c in rsps.calls if c.request.url == CREATE_URL]


def upload_calls(rsps: Any) -> list[Any]:
    return [c for c in rsps.calls if c.request.url == UPLOAD_URL]

