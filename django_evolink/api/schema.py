"""OpenAPI annotations of the REST API, for drf-spectacular (an optional extra).

``pip install django-evolink[spectacular]`` and add ``drf_spectacular`` to
INSTALLED_APPS to serve or generate the schema. Without it the decorators here do
nothing and the API works the same.

The checked-in schema is docs/openapi.yaml; regenerate it with::

    python -m django spectacular --settings=tests.settings --file docs/openapi.yaml
"""

from __future__ import annotations

from typing import Any

from .serializers import ImageTaskSerializer, TaskCreateSerializer, TaskUploadSerializer

try:  # pragma: no branch - exercised by both installs
    from drf_spectacular.utils import (
        OpenApiExample,
        OpenApiParameter,
        OpenApiResponse,
        extend_schema,
    )
except ImportError:  # drf-spectacular is optional
    #: Whether drf-spectacular is installed.
    HAS_SPECTACULAR = False
else:
    HAS_SPECTACULAR = True

_TASK_REF = {"$ref": "#/components/schemas/ImageTask"}

#: ``{field: [message, ...]}``: DRF's field-keyed validation errors.
FIELD_ERRORS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Field-keyed validation errors; each message says what is allowed.",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "example": {"image_urls": ["At most 2 images for wan2.5-image-to-image."]},
}

#: ``{detail, code, task?}``: every other error answer.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "task": {"allOf": [_TASK_REF], "nullable": True},
    },
    "required": ["detail", "code"],
}

#: An error answer about a task Evolink refused: ``task`` is always present.
REFUSAL_SCHEMA: dict[str, Any] = {
    **ERROR_SCHEMA,
    "required": ["detail", "code", "task"],
}

BAD_REQUEST_SCHEMA: dict[str, Any] = {"oneOf": [FIELD_ERRORS_SCHEMA, REFUSAL_SCHEMA, ERROR_SCHEMA]}


def _common_errors() -> dict[int, Any]:
    return {
        401: OpenApiResponse(ERROR_SCHEMA, description="Not authenticated."),
        403: OpenApiResponse(ERROR_SCHEMA, description="Not allowed (or CSRF failure)."),
    }


def _evolink_errors() -> dict[int, Any]:
    return {
        429: OpenApiResponse(
            ERROR_SCHEMA,
            description="Throttled by this site, or rate limited by Evolink after retries "
            "(then `task` is set). See the Retry-After header.",
        ),
        502: OpenApiResponse(
            REFUSAL_SCHEMA,
            description="Evolink refused this site's credentials (401/403), failed (5xx), "
            "answered something unusable, or could not be reached; the answer may have "
            "been lost (code outcome_unknown).",
        ),
        503: OpenApiResponse(
            REFUSAL_SCHEMA, description="The site's Evolink account is out of credits (402)."
        ),
    }


def task_list_create(view: Any) -> Any:
    """Annotate the ``tasks/`` view (GET list, POST create)."""
    if not HAS_SPECTACULAR:
        return view

    view.get = extend_schema(
        operation_id="evolink_tasks_list",
        summary="The caller's own tasks, newest first",
        parameters=[
            OpenApiParameter(
                "status", str, enum=["queued", "pending", "processing", "completed", "failed",
                                     "cancelled"],
                description="Only tasks with this status.",
            ),
        ],
        responses={
            200: ImageTaskSerializer(many=True),
            400: OpenApiResponse(FIELD_ERRORS_SCHEMA, description="Unknown status."),
            **_common_errors(),
            404: OpenApiResponse(
                ERROR_SCHEMA, description="No such page (not a positive number, or past the end)."
            ),
        },
    )(view.get)
    view.post = extend_schema(
        operation_id="evolink_tasks_create",
        summary="Create a task from image URLs (JSON) or uploaded images (multipart)",
        description=(
            "JSON: `{prompt, image_urls, n?, model?}`. Multipart: `prompt`, `images` (1-2 "
            "files), `n?`, `model?`. Invalid input answers 400 with field-keyed messages and "
            "nothing is sent to Evolink. When Evolink refuses, the task is kept as `failed` "
            "and the answer is `{detail, code, task}`. 201 with the task otherwise (also with "
            "ASYNC_SUBMIT, where the task is still `queued`)."
        ),
        request={
            "application/json": TaskCreateSerializer,
            "multipart/form-data": TaskUploadSerializer,
        },
        responses={
            201: ImageTaskSerializer,
            400: OpenApiResponse(
                BAD_REQUEST_SCHEMA,
                description="Invalid input (field-keyed), or Evolink refused it (400/404).",
            ),
            **_common_errors(),
            415: OpenApiResponse(ERROR_SCHEMA, description="Neither JSON nor multipart."),
            **_evolink_errors(),
        },
        examples=[
            OpenApiExample(
                "JSON",
                value={"prompt": "A watercolour version", "n": 1,
                       "image_urls": ["https://example.com/photo.jpg"]},
                request_only=True,
                media_type="application/json",
            )
        ],
    )(view.post)
    return view


def task_detail(view: Any) -> Any:
    """Annotate ``tasks/{id}/``."""
    if not HAS_SPECTACULAR:
        return view

    view.get = extend_schema(
        operation_id="evolink_tasks_retrieve",
        summary="One task (owner or staff)",
        responses={
            200: ImageTaskSerializer,
            **_common_errors(),
            404: OpenApiResponse(ERROR_SCHEMA, description="No such task visible to the caller."),
        },
    )(view.get)
    return view


def task_refresh(view: Any) -> Any:
    """Annotate ``tasks/{id}/refresh/``."""
    if not HAS_SPECTACULAR:
        return view

    view.post = extend_schema(
        operation_id="evolink_tasks_refresh",
        summary="Ask Evolink about the task now and answer the updated task",
        request=None,
        responses={
            200: ImageTaskSerializer,
            400: OpenApiResponse(REFUSAL_SCHEMA, description="Evolink refused the query."),
            **_common_errors(),
            404: OpenApiResponse(ERROR_SCHEMA, description="No such task visible to the caller."),
            **_evolink_errors(),
        },
    )(view.post)
    return view

