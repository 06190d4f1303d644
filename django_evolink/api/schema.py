"""OpenAPI annotations of the REST API, for drf-spectacular (an optional extra).

``pip install django-evolink[spectacular]`` and add ``drf_spectacular`` to
INSTALLED_APPS to serve or generate the schema. Without it the decorators here do
nothing and the API works the same.

The checked-in schema is docs/openapi.yaml; regenerate it with::

    python -m django spectacular --settings=tests.settings --file docs/openapi.yaml
"""

from __future__ import annotations

import json
import re
from typing import Any

from rest_framework import serializers

from ..evolink import catalogue
from .serializers import ImageTaskSerializer, TaskUploadSerializer

try:  # pragma: no branch - exercised by both installs
    from drf_spectacular.extensions import OpenApiSerializerExtension
    from drf_spectacular.utils import (
        OpenApiExample,
        OpenApiParameter,
        OpenApiResponse,
        PolymorphicProxySerializer,
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

#: A create refused by a spending limit: ``{detail, code: limit_exceeded, task: null, limit,
#: remaining}`` (docs/limits.md).
LIMIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **ERROR_SCHEMA["properties"],
        "code": {"type": "string", "enum": ["limit_exceeded"]},
        "limit": {"type": "string", "enum": ["ACTIVE_TASKS_PER_USER",
                                             "CREDITS_PER_USER_PER_DAY", "CREDITS_PER_DAY"]},
        "remaining": {"type": "string", "description": "What is left of the limit (tasks or "
                                                       "credits, as a decimal string)."},
    },
    "required": ["detail", "code", "task", "limit", "remaining"],
}

#: ``GET models/``: ``[{name, kind, default, parameters}]``.
MODEL_LIST_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["image"]},
            "default": {"type": "boolean"},
            "parameters": {"type": "object",
                           "description": "JSON Schema (2020-12) of the create body."},
        },
        "required": ["name", "kind", "default", "parameters"],
    },
}

BAD_REQUEST_SCHEMA: dict[str, Any] = {"oneOf": [FIELD_ERRORS_SCHEMA, REFUSAL_SCHEMA, ERROR_SCHEMA]}


def openapi_body(spec: catalogue.ModelSpec) -> dict[str, Any]:
    """One model's create body as an OpenAPI 3.0 schema (its JSON Schema, with ``const``
    written as a one-value ``enum`` and type lists as ``anyOf``). A parameter's ``enum``
    sits in an ``allOf``, so that drf-spectacular does not merge the many different
    ``quality``/``size`` choice sets of the models into shared enum components."""

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: convert(value) for key, value in node.items() if key != "title"}
        if "const" in out:
            out["enum"] = [out.pop("const")]
        if isinstance(out.get("type"), list):
            out["anyOf"] = [{"type": kind} for kind in out.pop("type")]
        return out

    schema = convert(spec.request_schema())
    for name, prop in schema["properties"].items():
        if "enum" in prop and name != "model":
            prop["allOf"] = [{"enum": prop.pop("enum")}]
    schema["description"] = f"Create body of {spec.name} ({spec.docs})."
    return json.loads(json.dumps(schema))


class ModelBodySerializer(serializers.Serializer):
    """Stands for one model's create body in the OpenAPI document; never validates
    (:class:`~.serializers.TaskCreateSerializer` does)."""

    model_name = ""


def body_serializers() -> dict[
    str, serializers.Serializer[Any] | type[serializers.Serializer[Any]]
]:
    """One :class:`ModelBodySerializer` per image model of the catalogue, by model name
    (the document describes the package's API; ``EVOLINK['MODELS']`` narrows what a site
    accepts, and ``GET models/`` says which)."""
    return {
        name: type(f"{re.sub(r'[^0-9A-Za-z]+', '_', name)}_Body", (ModelBodySerializer,),
                   {"model_name": name})
        for name in sorted(catalogue.CATALOGUE)
    }


if HAS_SPECTACULAR:

    class ModelBodyExtension(OpenApiSerializerExtension):
        """drf-spectacular: a :class:`ModelBodySerializer` is its model's JSON Schema."""

        target_class = ModelBodySerializer
        match_subclasses = True

        def get_name(self, auto_schema: Any = None, direction: Any = None) -> str:
            name = self.target.model_name
            return "TaskCreate_" + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")

        def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
            return openapi_body(catalogue.CATALOGUE[self.target.model_name])


#: The 404 of an endpoint about one task.
_NO_SUCH_TASK = "No such task visible to the caller."


def _access_errors(not_found: str | None = None, *,
                   forbidden: str = "Not allowed (or CSRF failure).",
                   media_type: str | None = None) -> dict[Any, Any]:
    """The ``{detail, code}`` answers 401, 403 and, described by ``not_found``, 404; keyed
    ``(status, media_type)`` with ``media_type`` (where the success is not JSON)."""
    descriptions = {401: "Not authenticated.", 403: forbidden}
    if not_found is not None:
        descriptions[404] = not_found
    return {
        (status if media_type is None else (status, media_type)):
            OpenApiResponse(ERROR_SCHEMA, description=description)
        for status, description in descriptions.items()
    }


def _evolink_errors(create: bool = False) -> dict[int, Any]:
    too_many = (
        OpenApiResponse(
            {"anyOf": [ERROR_SCHEMA, LIMIT_SCHEMA]},
            description="Throttled by this site, rate limited by Evolink after retries "
            "(then `task` is set), or refused by a spending limit (code limit_exceeded: "
            "nothing was kept or sent; Retry-After only when the limit frees up with time). "
            "See the Retry-After header.",
        ) if create else OpenApiResponse(
            ERROR_SCHEMA,
            description="Throttled by this site, or rate limited by Evolink after retries "
            "(then `task` is set). See the Retry-After header.",
        )
    )
    return {
        429: too_many,
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


def _etag_header() -> Any:
    return OpenApiParameter(
        "If-None-Match", str, location=OpenApiParameter.HEADER, required=False,
        description="The ETag of an earlier answer: 304 (no body) while it still matches.",
    )


def _not_modified() -> dict[int, Any]:
    return {304: OpenApiResponse(description="Not modified: the If-None-Match ETag matches.")}


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
            _etag_header(),
        ],
        responses={
            200: ImageTaskSerializer(many=True),
            **_not_modified(),
            400: OpenApiResponse(FIELD_ERRORS_SCHEMA, description="Unknown status."),
            **_access_errors("No such page (not a positive number, or past the end)."),
        },
    )(view.get)
    view.post = extend_schema(
        operation_id="evolink_tasks_create",
        summary="Create a task from image URLs (JSON) or uploaded images (multipart)",
        description=(
            "JSON: `{model?, prompt, image_urls?, n?, ...the model's other parameters}`, one "
            "schema per model, chosen by `model` (default EVOLINK['DEFAULT_MODEL']). "
            "Multipart: the same fields, with `images` (files) for `image_urls`. A parameter "
            "the model does not take, or a value outside what it allows, answers 400 keyed "
            "by the parameter, and nothing is sent to Evolink. When Evolink refuses, the task "
            "is kept as `failed` and the answer is `{detail, code, task}`. 201 with the task "
            "otherwise (also with ASYNC_SUBMIT, where the task is still `queued`)."
        ),
        request={
            "application/json": PolymorphicProxySerializer(
                component_name="TaskCreate",
                serializers=body_serializers,
                resource_type_field_name="model",
            ),
            "multipart/form-data": TaskUploadSerializer,
        },
        responses={
            201: ImageTaskSerializer,
            400: OpenApiResponse(
                BAD_REQUEST_SCHEMA,
                description="Invalid input (field-keyed), or Evolink refused it (400/404).",
            ),
            **_access_errors(),
            415: OpenApiResponse(ERROR_SCHEMA, description="Neither JSON nor multipart."),
            **_evolink_errors(create=True),
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


def model_list(view: Any) -> Any:
    """Annotate ``models/``."""
    if HAS_SPECTACULAR:
        view.get = extend_schema(
            operation_id="evolink_models_list",
            summary="The models this site allows, each with the JSON Schema of its create body",
            responses={200: OpenApiResponse(MODEL_LIST_SCHEMA, description="The allowed models."),
                       **_access_errors()},
        )(view.get)
    return view


def task_detail(view: Any) -> Any:
    """Annotate ``tasks/{id}/``."""
    if not HAS_SPECTACULAR:
        return view

    view.get = extend_schema(
        operation_id="evolink_tasks_retrieve",
        summary="One task (owner or staff)",
        description="Answers with an ETag; a GET also marks the task watched, so it is "
        "polled every few seconds while unfinished.",
        parameters=[_etag_header()],
        responses={
            200: ImageTaskSerializer,
            **_not_modified(),
            **_access_errors(_NO_SUCH_TASK),
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
            **_access_errors(_NO_SUCH_TASK),
            **_evolink_errors(),
        },
    )(view.post)
    return view


#: ``GET tasks/{id}/events/``: the stream, as OpenAPI 3.0 can say it.
EVENT_STREAM_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": "Server-Sent Events: `retry:`, then events `task` (`id:` the task's "
    "version, `data:` the task JSON as in `tasks/{id}/`), at once and after every change; "
    "`: keep-alive` comments between. Ends after the final status, or after "
    "EVOLINK['EVENTS_MAX_SECONDS'] (reconnect with Last-Event-ID).",
    "example": 'retry: 2000\n\nid: 1764638400123456.0\nevent: task\ndata: {"id": "…", '
    '"status": "processing", "progress": 40, …}\n\n',
}


def task_events(view: Any) -> Any:
    """Annotate ``tasks/{id}/events/``."""
    if not HAS_SPECTACULAR:
        return view

    view.get = extend_schema(
        operation_id="evolink_tasks_events",
        summary="Live updates of one task as Server-Sent Events (owner or staff)",
        description="Works under WSGI (bounded by EVOLINK['EVENTS_MAX_SECONDS']) and ASGI. "
        "While the stream is open the task is watched (polled every few seconds).",
        parameters=[
            OpenApiParameter(
                "Last-Event-ID", str, location=OpenApiParameter.HEADER, required=False,
                description="The `id:` of the last event received: only newer versions "
                "are sent.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                EVENT_STREAM_SCHEMA, description="The event stream."),
            (204, "text/event-stream"): OpenApiResponse(
                description="The task is final and Last-Event-ID is its final version: "
                "nothing more will come (EventSource stops reconnecting)."),
            **_access_errors(_NO_SUCH_TASK, forbidden="Not allowed.",
                             media_type="application/json"),
        },
    )(view.get)
    return view
