"""The Evolink API endpoints of the emulator (:class:`ApiHandlers`) and their route table.

``create`` (``POST /v1/images/generations``: validate, download and check the inputs,
reserve credits, add the task), ``task`` (``GET /v1/tasks/{id}``), ``credits``
(``GET /v1/credits``), ``upload`` (``POST /api/v1/files/upload/stream``) and ``files``
(result images and uploaded files). The endpoint names are those of the fault switches.
"""

from __future__ import annotations

import re
import secrets
import string
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from . import images
from .callbacks import CallbackDelivery
from .core import EmulatorCore
from .errors import BILLING_URL, ApiError
from .http import ApiRequest, LostAnswer, RawAnswer, Route, parse_multipart
from .lifecycle import Lifecycle
from .state import Task, UploadedFile
from .validation import check_api_key, validate_create

#: Evolink answers in China Standard Time (the upload example uses +08:00).
EVOLINK_TZ = timezone(timedelta(hours=8))
_ID_ALPHABET = string.ascii_lowercase + string.digits


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, EVOLINK_TZ).replace(microsecond=0).isoformat()


def _safe_segment(value: str) -> str:
    value = re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._")
    return value[:120]


class ApiHandlers:
    """The endpoint handlers of an emulator; :meth:`routes` maps requests to them."""

    def __init__(self, core: EmulatorCore, lifecycle: Lifecycle,
                 delivery: CallbackDelivery) -> None:
        self._core = core
        self._lifecycle = lifecycle
        self._delivery = delivery

    def routes(self) -> list[Route]:
        """The route table: method, whole-path pattern, endpoint name, handler."""
        return [
            Route("POST", re.compile(r"/v1/images/generations"), "create", self.create),
            Route("GET", re.compile(r"/v1/tasks/(?P<task_id>[^/]+)"), "task", self.task),
            Route("GET", re.compile(r"/v1/credits"), "credits", self.credits),
            Route("POST", re.compile(r"/api/v1/files/upload/stream"), "upload", self.upload,
                  multipart=True),
            Route("GET", re.compile(r"/files/.+|/api/v1/files/download/[^/]+"), "files",
                  self.files),
        ]

    def create(self, request: ApiRequest) -> dict[str, Any] | LostAnswer:
        """``POST /v1/images/generations``."""
        core = self._core
        check_api_key(request.headers, core.api_keys)
        params = validate_create(
            request.body, models=core.models, allow_private_urls=core.allow_private_urls,
            allow_insecure_callbacks=core.allow_insecure_callbacks,
        )
        spec = params["spec"]
        inputs = []
        for i, url in enumerate(params["image_urls"]):
            label = f"image_urls[{i}]"
            data = self._download_input(url, label, images.max_input_bytes(spec.images))
            try:
                images.check_input_image(data, label, spec.images)
            except images.ImageRuleError as exc:
                raise ApiError(400, str(exc), label)
            inputs.append(data)
        reserve = round(core.price_per_image * params["n"], 6)
        with core._lock:
            self._lifecycle.refresh_due_locked()
            if not core.credits.reserve(reserve):
                raise ApiError(
                    402,
                    f"Insufficient credits: this request needs {reserve:.2f} credits, "
                    f"{core.credits.balance:.2f} remaining",
                    fallback_suggestion=BILLING_URL,
                )
            now = core.clock.now()
            task_id = "task-unified-{}-{}".format(
                int(now), "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
            )
            outcome, message = core.faults.take_task_outcome()
            if outcome == "completed" and core.fail_rate and core.faults.chance(core.fail_rate):
                outcome, message = "failed", "The model failed to generate the image"
            task = Task(
                id=task_id, model=params["model"], prompt=params["prompt"], n=params["n"],
                image_urls=list(params["image_urls"]), callback_url=params["callback_url"],
                params=params["params"], result_size=spec.output_size(params["params"]),
                created=now, duration=core.task_duration, credits_reserved=reserve,
                inputs=inputs, outcome=outcome, error_message=message, base_url=core.url,
            )
            core.tasks.add(task)
            answer = task.to_json()
        lost = core.faults.take_lose_create()
        if lost is not None:
            return LostAnswer(*lost)
        return answer

    def task(self, request: ApiRequest) -> dict[str, Any]:
        """``GET /v1/tasks/{task_id}``."""
        core = self._core
        check_api_key(request.headers, core.api_keys)
        task_id = request.params["task_id"]
        with core._lock:
            task = core.tasks.get(task_id)
            self._lifecycle.refresh_due_locked(task)
            if task is None:
                raise ApiError(404, f"Task '{task_id}' not found or expired", "task_id")
            answer = task.to_json()
        self._delivery.run_due()
        return answer

    def credits(self, request: ApiRequest) -> dict[str, Any]:
        """``GET /v1/credits``."""
        core = self._core
        check_api_key(request.headers, core.api_keys)
        with core._lock:
            self._lifecycle.refresh_due_locked()  # credits are settled when tasks finish
            return core.credits.as_json()

    def upload(self, request: ApiRequest) -> dict[str, Any]:
        """``POST /api/v1/files/upload/stream`` (multipart: file, upload_path, file_name)."""
        core = self._core
        check_api_key(request.headers, core.api_keys)
        content_type = request.headers.get("Content-Type") or ""
        if not content_type.lower().startswith("multipart/form-data"):
            raise ApiError(400, "The request must be multipart/form-data with a 'file' part",
                           "file")
        fields, files = parse_multipart(content_type, request.raw)
        if "file" not in files:
            raise ApiError(400, "file is required", "file")
        original_name, content = files["file"]
        if not content:
            raise ApiError(400, "file is empty", "file")
        if len(content) > core.upload_max_bytes:
            raise ApiError(400, f"file is too large: {len(content)} bytes, at most "
                           f"{core.upload_max_bytes}", "file")
        sniffed = images.sniff_upload(content)
        if sniffed is None:
            raise ApiError(400, "Unsupported file type: upload a jpeg, png, gif or webp image",
                           "file")
        ext, mime = sniffed
        file_id = "file_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        name = _safe_segment(fields.get("file_name") or original_name or "") or f"{file_id}.{ext}"
        path = "/".join(
            s for s in (_safe_segment(p) for p in (fields.get("upload_path") or "").split("/"))
            if s
        ) or "uploads"
        now = core.clock.now()
        uploaded = UploadedFile(
            file_id=file_id, file_name=name, original_name=original_name or name,
            upload_path=path, mime_type=mime, content=content, uploaded_at=now,
            expires_at=now + core.upload_ttl,
        )
        with core._lock:
            core.uploads[file_id] = uploaded
        return {
            "success": True,
            "code": 200,
            "msg": "File uploaded successfully",
            "data": {
                "file_id": file_id,
                "file_name": name,
                "original_name": uploaded.original_name,
                "file_size": len(content),
                "mime_type": mime,
                "upload_path": path,
                "file_url": f"{core.url}{uploaded.url_path}",
                "download_url": f"{core.url}/api/v1/files/download/{file_id}",
                "upload_time": _iso(now),
                "expires_at": _iso(uploaded.expires_at),
            },
        }

    def files(self, request: ApiRequest) -> RawAnswer:
        """GET of a result image (``/files/results/<task>/<n>.png``) or an uploaded file."""
        core = self._core
        path = request.path
        now = core.clock.now()
        match = re.fullmatch(r"/files/results/([^/]+)/(\d+)\.png", path)
        if match:
            with core._lock:
                task = core.tasks.get(match.group(1))
                self._lifecycle.refresh_due_locked(task)
                index = int(match.group(2))
                if task is None or task.status != "completed" or index >= task.n:
                    raise ApiError(404, "Result image not found", "file")
                if task.results_expire_at is not None and now >= task.results_expire_at:
                    raise ApiError(404, "Result image expired: result URLs are valid for "
                                   f"{core.result_ttl / 3600:g} hours", "file")
                cache = task.__dict__.setdefault("_rendered", {})
                if index not in cache:
                    cache[index] = images.render_result(task.inputs, task.prompt, index, task.n,
                                                        task.result_size)
                return RawAnswer(cache[index], "image/png")
        with core._lock:
            found = None
            match = re.fullmatch(r"/api/v1/files/download/([^/]+)", path)
            for uploaded in core.uploads.values():
                if (match and uploaded.file_id == match.group(1)) or uploaded.url_path == path:
                    found = uploaded
            if found is None or now >= found.expires_at:
                raise ApiError(404, "File not found or expired", "file")
            headers = {}
            if match:
                headers["Content-Disposition"] = f'attachment; filename="{found.file_name}"'
            return RawAnswer(found.content, found.mime_type, headers)

    def _download_input(self, url: str, label: str, limit: int) -> bytes:
        try:
            with self._core._http.get(url, timeout=self._core.download_timeout,
                                      stream=True) as response:
                if response.status_code != 200:
                    raise ApiError(
                        400, f"{label}: the image could not be downloaded "
                        f"(HTTP {response.status_code}); the URL must be directly downloadable",
                        label,
                    )
                data = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    data.extend(chunk)
                    if len(data) > limit:
                        raise ApiError(
                            400, f"{label}: the image is larger than the "
                            f"{limit / 1024 / 1024:g} MB limit ({limit} bytes)", label,
                        )
                return bytes(data)
        except requests.RequestException as exc:
            raise ApiError(
                400, f"{label}: the image could not be downloaded ({type(exc).__name__})",
                label,
            )
