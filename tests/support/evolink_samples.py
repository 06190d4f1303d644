"""Canned Evolink answers, shaped exactly as ``tests/support/schemas/*.json`` require.

Every function returns a fresh dict, so a test may modify what it gets. The test suite
(client, services, views, emulator conformance) reuses them; ``tests/evolink/test_client.py``
checks each one against its JSON Schema. ``load_schema(name)`` reads a schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).parent / "schemas"

API_KEY = "sk-evo-test-key-0123456789abcdef"
MODEL = "wan2.5-image-to-image"
TASK_ID = "task-unified-1757156493-imcg5zqt"
CREATED = 1757156493

#: Evolink's error type for each HTTP status it documents.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large_error",
    429: "rate_limit_error",
    500: "internal_server_error",
    502: "upstream_error",
    503: "service_unavailable_error",
}


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``tests/support/schemas/<name>.json`` (``name`` without ``.json``)."""
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))


def result_urls(task_id: str = TASK_ID, n: int = 1) -> list[str]:
    """Plausible Evolink result links for a completed task."""
    return [f"https://files.evolink.ai/results/{task_id}/{i}.png" for i in range(n)]


def task_answer(
    id: str = TASK_ID,  # noqa: A002 - mirrors Evolink's field name
    status: str = "pending",
    progress: int | None = None,
    results: list[str] | None = None,
    *,
    model: str = MODEL,
    created: int = CREATED,
    credits_reserved: float = 1.2,
    billing_rule: str = "per_call",
    user_group: str = "default",
    estimated_time: int = 30,
    can_cancel: bool | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A task object as answered by create, task query and callbacks; ``error`` (the
    ``{code, message}`` of a failed or cancelled task) is added when given.

    ``progress`` defaults to 0 (pending), 50 (processing) or 100 (final states).
    A ``completed`` task without explicit ``results`` gets one result URL, as Evolink
    always lists the results of a completed task.
    """
    if progress is None:
        progress = {"pending": 0, "processing": 50}.get(status, 100)
    if can_cancel is None:
        can_cancel = status in ("pending", "processing")
    answer: dict[str, Any] = {
        "created": created,
        "id": id,
        "model": model,
        "object": "image.generation.task",
        "progress": progress,
        "status": status,
        "task_info": {"can_cancel": can_cancel, "estimated_time": estimated_time},
        "type": "image",
        "usage": {
            "billing_rule": billing_rule,
            "credits_reserved": credits_reserved,
            "user_group": user_group,
        },
    }
    if results is None and status == "completed":
        results = result_urls(id)
    if results is not None:
        answer["results"] = list(results)
    if error is not None:
        answer["error"] = dict(error)
    return answer


def credits_answer(
    remaining: float = 1095.39, used: float = 135.90, *, unlimited: bool = False
) -> dict[str, Any]:
    """The answer of ``GET /v1/credits``."""
    return {
        "success": True,
        "message": "",
        "data": {
            "token": {
                "remaining_credits": 99416.44,
                "unlimited_credits": unlimited,
                "used_credits": 583.55,
            },
            "user": {"remaining_credits": remaining, "used_credits": used},
        },
    }


def upload_answer(
    file_name: str = "photo.png",
    *,
    file_id: str = "file_abc123",
    mime_type: str = "image/png",
    file_size: int = 2048,
    upload_path: str = "photos",
) -> dict[str, Any]:
    """The successful answer of the files API's stream upload."""
    prefix = f"{upload_path}/" if upload_path else ""
    return {
        "success": True,
        "code": 200,
        "msg": "File uploaded successfully",
        "data": {
            "file_id": file_id,
            "file_name": file_name,
            "original_name": file_name,
            "file_size": file_size,
            "mime_type": mime_type,
            "upload_path": upload_path,
            "file_url": f"https://files.evolink.ai/{prefix}{file_name}",
            "download_url": f"https://files.evolink.ai/api/v1/files/download/{file_id}",
            "upload_time": "2025-10-09T00:00:00+08:00",
            "expires_at": "2025-10-12T00:00:00+08:00",
        },
    }


def error_answer(
    status: int,
    type: str | None = None,  # noqa: A002 - mirrors Evolink's field name
    message: str | None = None,
    param: str | None = None,
    *,
    fallback_suggestion: str | None = None,
) -> dict[str, Any]:
    """An Evolink error body; ``type`` defaults to the one documented for ``status``."""
    error_type = type or ERROR_TYPES[status]
    error: dict[str, Any] = {
        "code": status,
        "message": message or f"Sample {error_type} message",
        "type": error_type,
    }
    if param is not None:
        error["param"] = param
    if fallback_suggestion is not None:
        error["fallback_suggestion"] = fallback_suggestion
    return {"error": error}
