"""Views of the REST API: thin; validation is in the serializers, work in ``services``.

Permission and throttle classes come from ``EVOLINK['PERMISSION_CLASSES']`` and
``EVOLINK['THROTTLE_CLASSES']``; authentication is the site's DRF default (session
authentication enforces CSRF on POSTs). The views are not wrapped in the site's
``ATOMIC_REQUESTS``: a task is saved (and committed) before it is sent to Evolink, so
nothing sent is ever rolled back.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.db import transaction
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from rest_framework import generics, status
from rest_framework.exceptions import APIException, NotFound, ParseError, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from .. import conf
from ..core import live, services
from ..core.models import ImageTask
from ..evolink import catalogue
from ..exceptions import EvolinkError, EvolinkLimitExceededError, EvolinkValidationError
from . import schema, uploads
from .errors import error_response
from .events import EventStreamRenderer, TaskStream
from .pagination import EvolinkPagination
from .parsers import EvolinkJSONParser, EvolinkMultiPartParser, too_large_message
from .permissions import IsOwnerOrModelPermission, visible_tasks
from .serializers import (
    ImageTaskSerializer,
    TaskCreateSerializer,
    TaskListQuerySerializer,
    TaskUploadSerializer,
)
from .throttles import CREATE_SCOPE, REFRESH_SCOPE


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class EvolinkAPIView(generics.GenericAPIView):
    """Base of the API views: settings-selected permissions/throttles, error mapping."""

    serializer_class = ImageTaskSerializer
    lookup_url_kwarg = "id"
    # every body these cannot take (too deep, too large, not JSON) is a 400 saying why
    parser_classes = [EvolinkJSONParser, EvolinkMultiPartParser]

    def get_permissions(self) -> list[Any]:
        return [cls() for cls in conf.import_classes("PERMISSION_CLASSES")]

    def get_throttles(self) -> list[Any]:
        return [cls() for cls in conf.import_classes("THROTTLE_CLASSES")]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, RequestDataTooBig):
            # raised by request.body (DRF reads JSON through it) outside any parser
            exc = ParseError(too_large_message(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0))
        if isinstance(exc, EvolinkError):
            return error_response(exc, context=self.get_serializer_context())
        response = super().handle_exception(exc)
        # Non-validation errors answer {"detail", "code"} like Evolink refusals do.
        # DRF turns Django's Http404 (e.g. an unknown ?format=) and PermissionDenied into
        # answers too: they get their codes the same way.
        if (
            isinstance(exc, (APIException, Http404, PermissionDenied))
            and not isinstance(exc, ValidationError)
            and isinstance(response.data, dict)
            and "detail" in response.data
            and "code" not in response.data
        ):
            if isinstance(exc, Http404):
                codes: Any = "not_found"
            elif isinstance(exc, PermissionDenied):
                codes = "permission_denied"
            else:
                codes = exc.get_codes()
            response.data["code"] = codes if isinstance(codes, str) else "error"
        return response

    def task_queryset(self) -> Any:
        return visible_tasks(self.request.user).prefetch_related("images")

    def get_object(self) -> ImageTask:
        try:
            pk = uuid.UUID(str(self.kwargs[self.lookup_url_kwarg]))
        except ValueError:
            raise NotFound(_("No task with this id."))
        task = self.task_queryset().filter(pk=pk).first()
        if task is None:  # also another user's task: its existence is not revealed
            raise NotFound(_("No task with this id."))
        self.check_object_permissions(self.request, task)
        # whatever the configured classes: the owner, or the model permission (a reader
        # without change permission may see the task but not refresh it: 403)
        rule = IsOwnerOrModelPermission()
        if not rule.has_object_permission(self.request, self, task):
            self.permission_denied(self.request, message=str(rule.message),
                                   code="permission_denied")
        return task

    def task_response(self, task: ImageTask, code: int = status.HTTP_200_OK,
                      headers: dict | None = None) -> Response:
        data = ImageTaskSerializer(task, context=self.get_serializer_context()).data
        return Response(data, status=code, headers={
            "ETag": live.task_etag(task, translation.get_language()), **(headers or {})})

    def not_modified(self, etag: str) -> Response | None:
        """A 304 when the request's ``If-None-Match`` matches ``etag``, else None."""
        if live.etag_matches(self.request.headers.get("If-None-Match"), etag):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        return None


@schema.task_list_create
class TaskListCreateView(generics.ListAPIView, EvolinkAPIView):
    """``GET tasks/``: the caller's tasks; ``POST tasks/``: create a task."""

    pagination_class = EvolinkPagination

    def get_throttle_scope(self, request: Request) -> str | None:
        return CREATE_SCOPE if request.method == "POST" else None

    def get_queryset(self) -> Any:
        user = self.request.user
        # (an AnonymousUser is never authenticated; the isinstance narrows the type)
        if isinstance(user, AnonymousUser) or not getattr(user, "is_authenticated", False):
            return ImageTask.objects.none()
        query = TaskListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        qs = ImageTask.objects.filter(user=user).prefetch_related("images")
        if query.validated_data.get("status"):
            qs = qs.filter(status=query.validated_data["status"])
        return qs.order_by("-created_at", "-pk")

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = list(page) if page is not None else list(queryset)
        paginator = getattr(self.paginator, "page", None)
        count = paginator.paginator.count if paginator is not None else len(rows)
        etag = live.list_etag(dict(request.query_params.lists()), count, rows,
                              translation.get_language())
        unchanged = self.not_modified(etag)
        if unchanged is not None:
            return unchanged
        data = self.get_serializer(rows, many=True).data
        response = (self.get_paginated_response(data) if page is not None
                    else Response(data))
        response["ETag"] = etag
        return response

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        user = request.user if getattr(request.user, "is_authenticated", False) else None
        if (request.content_type or "").startswith("multipart/"):
            task = self._create_from_uploads(request, user)
        else:
            serializer = TaskCreateSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            task = services.create_task(**serializer.validated_data, user=user,
                                        request=request)
        task = self.task_queryset().get(pk=task.pk) if user else task
        location = reverse("evolink:task-detail", kwargs={"id": str(task.pk)})
        return self.task_response(task, status.HTTP_201_CREATED,
                                  headers={"Location": request.build_absolute_uri(location)})

    def _create_from_uploads(self, request: Request, user: Any) -> ImageTask:
        serializer = TaskUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        # refused by a limit: say so before the images are uploaded to Evolink
        services.check_limits(user=user, model=data["model"], n=data["n"],
                              params=data["params"], request=request)
        prepared = uploads.prepare_inputs(data["images"], request=request)
        try:
            return services.create_task(
                prompt=data["prompt"],
                image_urls=[p.url for p in prepared],
                n=data["n"],
                model=data["model"],
                params=data["params"],
                user=user,
                input_files=[p.storage_name for p in prepared],
                request=request,
            )
        except EvolinkLimitExceededError:
            uploads.delete_inputs([p.storage_name for p in prepared])  # nothing was saved
            raise
        except EvolinkValidationError as exc:
            # nothing was saved: drop the copies, and speak of the files, not of URLs
            uploads.delete_inputs([p.storage_name for p in prepared])
            raise ValidationError(
                {("images" if k == "image_urls" else k): v for k, v in exc.errors.items()}
            )


@schema.model_list
class ModelListView(EvolinkAPIView):
    """``GET models/``: the models this site allows, each with the JSON Schema of its
    create body (a frontend builds its form from it)."""

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(catalogue.model_list())


@schema.task_detail
class TaskDetailView(EvolinkAPIView):
    """``GET tasks/{id}/``: one task, for its owner or staff."""

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        task = self.get_object()
        services.watch_task(task)
        unchanged = self.not_modified(live.task_etag(task, translation.get_language()))
        if unchanged is not None:
            return unchanged
        return self.task_response(task)


@schema.task_refresh
class TaskRefreshView(EvolinkAPIView):
    """``POST tasks/{id}/refresh/``: ask Evolink now, answer the updated task."""

    throttle_scope = REFRESH_SCOPE

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        task = self.get_object()
        try:
            services.refresh_task(task)
        except EvolinkError as exc:
            exc.task = self.task_queryset().get(pk=task.pk)
            raise
        return self.task_response(self.task_queryset().get(pk=task.pk))


@schema.task_events
class TaskEventsView(EvolinkAPIView):
    """``GET tasks/{id}/events/``: the task as Server-Sent Events (see :mod:`.events`)."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        task = self.get_object()
        last = live.parse_version(request.headers.get("Last-Event-ID"))
        current = live.parse_version(live.task_version(task))
        if task.is_final and last is not None and current is not None and last >= current:
            # the client saw the final version: 204 tells EventSource not to reconnect
            return HttpResponse(status=status.HTTP_204_NO_CONTENT)
        services.watch_task(task)
        context = self.get_serializer_context()
        language = translation.get_language()

        def serialize(item: ImageTask) -> Any:
            # later, maybe in another thread: in the language of the request
            with translation.override(language):
                return ImageTaskSerializer(item, context=context).data

        stream = TaskStream(task.pk, serialize, last)
        content = (stream.async_iter() if isinstance(request._request, ASGIRequest)
                   else stream.sync_iter())
        response = StreamingHttpResponse(content, content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response

    def finalize_response(self, request: Request, response: Any, *args: Any,
                          **kwargs: Any) -> Any:
        # an error (401, 403, 404) is JSON, as documented, even for a client that asked
        # for the event stream (EventSource always does)
        if isinstance(response, Response) and isinstance(
                getattr(request, "accepted_renderer", None), EventStreamRenderer):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
