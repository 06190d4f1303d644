"""The Evolink API endpoints of the emulator (:class:`ApiHandlers`) and their route table.

``create`` (``POST /v1/images/generations``: validate, download and check the inputs,
reserve credits, add the task), ``task`` (``GET /v1/tasks/{id}``), ``credits``
(``GET /v1/credits``), ``upload`` (``POST /api/v1/files/upload/stream``) and ``files``
(result images and uploaded files). The endpoint names are those of the fault switches.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import requests

from . import images
from .callbacks import CallbackDelivery
from .core import EmulatorCore
from .errors import ApiError
from .faults import DEFAULT_FAIL_CODE
from .http import ApiRequest, LostAnswer, RawAnswer, Route, parse_multipart
from .lifecycle import Lifecycle
from .state import Task, UploadedFile
from .validation import check_api_key, check_url, validate_create

#: Evolink answers in China Standard Time (the upload example uses +08:00).
EVOLINK_TZ = timezone(timedelta(hours=8))
_ID_ALPHABET = string.ascii_lowercase + string.digits
#: A well-formed task id (``task-unified-1757156493-imcg5zqt``): another id is a 400
#: (``param: task_id``), a well-formed unknown one a 404 (evolink-api.md §6).
TASK_ID_PATTERN = re.compile(r"task-[A-Za-z0-9]+-\d+-[A-Za-z0-9]+")
#: Emulated seconds before a task whose input image is broken fails (the emulator's guess:
#: Evolink fetches the inputs first, so it fails early).
INPUT_FAILURE_SECONDS = 2.0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, EVOLINK_TZ).replace(microsecond=0).isoformat()


def _field(fields: dict[str, Any], name: str) -> Any:
    """Field ``name`` (snake_case) of a files API request, or its camelCase spelling."""
    if fields.get(name) not in (None, ""):
        return fields[name]
    head, *rest = name.split("_")
    return fields.get(head + "".join(part.title() for part in rest))


def _positive_int(value: str, name: str, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= high:
        raise ApiError(400, f"{name} must be an integer from 1 to {high}", name)
    return number


def _files_ok(message: str, data: dict[str, Any]) -> dict[str, Any]:
    """The files API's success envelope (evolink-api.md §5)."""
    return {"success": True, "code": 200, "msg": message, "data": data}


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
                  multipart=True, files_api=True),
            Route("POST", re.compile(r"/api/v1/files/upload/base64"), "upload",
                  self.upload_base64, files_api=True),
            Route("POST", re.compile(r"/api/v1/files/upload/url"), "upload", self.upload_url,
                  files_api=True),
            Route("GET", re.compile(r"/api/v1/files/list"), "upload", self.list_files,
                  files_api=True),
            Route("GET", re.compile(r"/api/v1/files/quota"), "upload", self.quota,
                  files_api=True),
            Route("DELETE", re.compile(r"/api/v1/files/(?P<file_id>file_[^/]+)"), "upload",
                  self.delete_file, files_api=True),
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
        # Evolink fetches the inputs after accepting the task: a broken one (unreachable,
        # too big, wrong format) fails the task with image_processing_error, not a 400.
        inputs: list[bytes] = []
        input_problem: str | None = None
        for i, url in enumerate(params["image_urls"]):
            label = f"image_urls[{i}]"
            try:
                data = self._download_input(url, label, images.max_input_bytes(spec.images))
                images.check_input_image(data, label, spec.images)
            except images.ImageRuleError as exc:
                input_problem = str(exc)
                break
            inputs.append(data)
        reserve = round(core.price_per_image * params["n"], 4)
        with core._lock:
            self._lifecycle.refresh_due_locked()
            short = core.credits.short_of(reserve)
            if short is not None:
                left = (core.credits.balance if short == "user"
                        else core.credits.token_balance or 0.0)
                whose = "credits" if short == "user" else "credits on this API key"
                raise ApiError(
                    402,
                    f"Insufficient {whose}: this request needs {reserve:.4f} credits, "
                    f"{left:.4f} remaining",
                )
            core.credits.reserve(reserve)
            now = core.clock.now()
            task_id = "task-unified-{}-{}".format(
                int(now), "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
            )
            outcome, code, message = core.faults.take_task_outcome()
            if outcome == "completed" and core.fail_rate and core.faults.chance(core.fail_rate):
                outcome, code, message = "failed", DEFAULT_FAIL_CODE, None
            duration = core.task_duration
            if input_problem is not None:
                outcome, code, message = "failed", "image_processing_error", input_problem
                duration = min(duration, INPUT_FAILURE_SECONDS)
            task = Task(
                id=task_id, model=params["model"], prompt=params["prompt"], n=params["n"],
                image_urls=list(params["image_urls"]), callback_url=params["callback_url"],
                params=params["params"], result_size=spec.output_size(params["params"]),
                created=now, duration=duration, credits_reserved=reserve,
                inputs=inputs, outcome=outcome, error_code=code, error_message=message,
                base_url=core.url,
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
        if not TASK_ID_PATTERN.fullmatch(task_id):
            raise ApiError(400, f"Invalid task_id '{task_id[:80]}': expected an id such as "
                           "'task-unified-1757156493-imcg5zqt'", "task_id")
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
        """``POST /api/v1/files/upload/stream`` (multipart: ``file``, ``upload_path`` or
        ``uploadPath``, ``file_name`` or ``fileName``)."""
        check_api_key(request.headers, self._core.api_keys)
        content_type = request.headers.get("Content-Type") or ""
        if not content_type.lower().startswith("multipart/form-data"):
            raise ApiError(400, "The request must be multipart/form-data with a 'file' part",
                           "file")
        fields, files = parse_multipart(content_type, request.raw)
        if "file" not in files:
            raise ApiError(400, "file is required", "file")
        original_name, content = files["file"]
        return self._store_upload(content, fields, original_name)

    def upload_base64(self, request: ApiRequest) -> dict[str, Any]:
        """``POST /api/v1/files/upload/base64`` (JSON: ``base64_data`` — plain base64 or a
        ``data:`` URL —, ``upload_path``/``uploadPath``, ``file_name``/``fileName``)."""
        check_api_key(request.headers, self._core.api_keys)
        fields = self._json_fields(request)
        encoded = _field(fields, "base64_data")
        if not isinstance(encoded, str) or not encoded:
            raise ApiError(400, "base64_data is required: the file as base64 (or a data: URL)",
                           "base64_data")
        if encoded.startswith("data:"):
            encoded = encoded.partition(",")[2]
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "base64_data is not valid base64", "base64_data")
        return self._store_upload(content, fields, "")

    def upload_url(self, request: ApiRequest) -> dict[str, Any]:
        """``POST /api/v1/files/upload/url`` (JSON: ``file_url``/``fileUrl``, ``upload_path``
        /``uploadPath``, ``file_name``/``fileName``): the emulator downloads the file."""
        core = self._core
        check_api_key(request.headers, core.api_keys)
        fields = self._json_fields(request)
        url = _field(fields, "file_url")
        check_url(url, "file_url", https_only=False, allow_internal=core.allow_private_urls,
                  what="the file URL")
        try:
            content = self._download_input(url, "file_url", core.upload_max_bytes)
        except images.ImageRuleError as exc:
            status = 413 if "larger than" in str(exc) else 400
            raise ApiError(status, str(exc), "file_url")
        original = urlsplit(url).path.rsplit("/", 1)[-1]
        return self._store_upload(content, fields, original)

    def list_files(self, request: ApiRequest) -> dict[str, Any]:
        """``GET /api/v1/files/list?page=&pageSize=``: the account's live uploads, newest
        first."""
        core = self._core
        check_api_key(request.headers, core.api_keys)
        page = _positive_int(request.query.get("page", "1"), "page", 10**6)
        size = _positive_int(request.query.get("pageSize") or request.query.get("page_size")
                             or "20", "pageSize", 100)
        with core._lock:
            live = self._live_uploads_locked()
        live.sort(key=lambda f: f.uploaded_at, reverse=True)
        chunk = live[(page - 1) * size: page * size]
        return _files_ok("Files retrieved successfully", {
            "files": [self._file_json(f) for f in chunk],
            "total": len(live), "page": page, "page_size": size,
        })

    def quota(self, request: ApiRequest) -> dict[str, Any]:
        """``GET /api/v1/files/quota``: how many files the account holds and may hold."""
        core = self._core
        check_api_key(request.headers, core.api_keys)
        with core._lock:
            used = len(self._live_uploads_locked())
        return _files_ok("Quota retrieved successfully", {
            "used_files": used, "max_files": core.upload_quota,
            "remaining_files": max(0, core.upload_quota - used),
        })

    def delete_file(self, request: ApiRequest) -> dict[str, Any]:
        """``DELETE /api/v1/files/{file_id}``."""
        core = self._core
        check_api_key(request.headers, core.api_keys)
        file_id = request.params["file_id"]
        with core._lock:
            uploaded = core.uploads.get(file_id)
            if uploaded is None or core.clock.now() >= uploaded.expires_at:
                raise ApiError(404, f"File '{file_id}' not found or expired", "file_id")
            del core.uploads[file_id]
        return _files_ok("File deleted successfully", {"file_id": file_id})

    # -- files API helpers ------------------------------------------------------------
    @staticmethod
    def _json_fields(request: ApiRequest) -> dict[str, Any]:
        if not isinstance(request.body, dict):
            raise ApiError(400, "The request body must be a JSON object")
        return request.body

    def _live_uploads_locked(self) -> list[UploadedFile]:
        now = self._core.clock.now()
        return [f for f in self._core.uploads.values() if now < f.expires_at]

    def _file_json(self, uploaded: UploadedFile) -> dict[str, Any]:
        core = self._core
        return {
            "file_id": uploaded.file_id,
            "file_name": uploaded.file_name,
            "original_name": uploaded.original_name,
            "file_size": len(uploaded.content),
            "mime_type": uploaded.mime_type,
            "upload_path": uploaded.upload_path,
            "file_url": f"{core.url}{uploaded.url_path}",
            "download_url": f"{core.url}/api/v1/files/download/{uploaded.file_id}",
            "upload_time": _iso(uploaded.uploaded_at),
            "expires_at": _iso(uploaded.expires_at),
        }

    def _store_upload(self, content: bytes, fields: dict[str, Any],
                      original_name: str) -> dict[str, Any]:
        """Check and keep one uploaded file; the answer of every upload endpoint."""
        core = self._core
        if not content:
            raise ApiError(400, "file is empty", "file")
        if len(content) > core.upload_max_bytes:
            raise ApiError(413, f"file is too large: {len(content)} bytes, at most "
                           f"{core.upload_max_bytes} ({core.upload_max_bytes / 1024 / 1024:g} MB)",
                           "file")
        sniffed = images.sniff_upload(content)
        if sniffed is None:
            raise ApiError(400, "Unsupported file type: upload a jpeg, png, gif or webp image",
                           "file")
        ext, mime = sniffed
        file_id = "file_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        given = _field(fields, "file_name")
        # without a name, a unique one is generated (evolink-api.md §8)
        name = _safe_segment(given if isinstance(given, str) else "") or f"{file_id}.{ext}"
        upload_path = _field(fields, "upload_path")
        path = "/".join(
            s for s in (_safe_segment(p) for p in str(upload_path or "").split("/")) if s
        ) or "uploads"
        now = core.clock.now()
        uploaded = UploadedFile(
            file_id=file_id, file_name=name, original_name=original_name or name,
            upload_path=path, mime_type=mime, content=content, uploaded_at=now,
            expires_at=now + core.upload_ttl,
        )
        with core._lock:
            if len(self._live_uploads_locked()) >= core.upload_quota:
                raise ApiError(403, f"Upload quota exceeded: at most {core.upload_quota} files; "
                               "delete files or wait for them to expire (72 hours)", "file")
            core.uploads[file_id] = uploaded
        return _files_ok("File uploaded successfully", self._file_json(uploaded))

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
                    raise images.ImageRuleError(
                        f"{label}: the image could not be downloaded "
                        f"(HTTP {response.status_code}); the URL must be directly downloadable"
                    )
                data = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    data.extend(chunk)
                    if len(data) > limit:
                        raise images.ImageRuleError(
                            f"{label}: the image is larger than the "
                            f"{limit / 1024 / 1024:g} MB limit ({limit} bytes)"
                        )
                return bytes(data)
        except requests.RequestException as exc:
            raise images.ImageRuleError(
                f"{label}: the image could not be downloaded ({type(exc).__name__})"
            )
