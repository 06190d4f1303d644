"""Serializers of the REST API.

Validation goes through :mod:`django_evolink.catalogue`, so the API, the Python API
and the management commands refuse the same inputs with the same messages. Read
serializers expose only what a frontend needs: never the callback token hash, the
polling lease or other bookkeeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import QueryDict
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework import serializers

from ..core.models import GeneratedImage, ImageTask, Status
from ..evolink import catalogue
from ..exceptions import EvolinkValidationError


class UsageSerializer(serializers.Serializer):
    """Evolink's usage of a task, as mirrored (``credits_reserved`` is a decimal string)."""

    billing_rule = serializers.CharField(allow_null=True)
    credits_reserved = serializers.CharField(
        allow_null=True, help_text=gettext_lazy("Credits reserved, as a decimal string.")
    )
    user_group = serializers.CharField(allow_null=True)


class TaskErrorSerializer(serializers.Serializer):
    """Why a task failed: Evolink's error type (or a local code) and a message."""

    code = serializers.CharField()
    message = serializers.CharField()


class GeneratedImageSerializer(serializers.ModelSerializer):
    """One result image: the stored copy's URL (null until stored) and Evolink's link."""

    url = serializers.SerializerMethodField(
        help_text=gettext_lazy("URL of the copy in the site's storage; null until stored.")
    )

    class Meta:
        model = GeneratedImage
        fields = ["index", "url", "source_url", "width", "height"]
        read_only_fields = fields

    def get_url(self, obj: GeneratedImage) -> str | None:
        if not obj.file:
            return None
        url = obj.file.url
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None else url


class ImageTaskSerializer(serializers.ModelSerializer):
    """A task as the API answers it (read only)."""

    image_urls = serializers.ListField(child=serializers.CharField(), read_only=True)
    usage = UsageSerializer(read_only=True)
    images = GeneratedImageSerializer(many=True, read_only=True)
    error = TaskErrorSerializer(read_only=True, allow_null=True)

    class Meta:
        model = ImageTask
        fields = [
            "id",
            "evolink_id",
            "model",
            "prompt",
            "image_urls",
            "n",
            "status",
            "progress",
            "estimated_time",
            "can_cancel",
            "usage",
            "images",
            "error",
            "created_at",
            "updated_at",
            "completed_at",
        ]
        read_only_fields = fields


class EvolinkErrorSerializer(serializers.Serializer):
    """An error answer: ``detail`` and ``code``; ``task`` when Evolink refused a task."""

    detail = serializers.CharField()
    code = serializers.CharField()
    task = ImageTaskSerializer(required=False, allow_null=True)


class ImageFileField(serializers.FileField):
    """An uploaded image file (documented as binary in the OpenAPI schema)."""


try:  # drf-spectacular is optional
    from drf_spectacular.utils import extend_schema_field
except ImportError:  # pragma: no cover - exercised without the extra
    pass
else:  # (marks the class itself and returns it)
    extend_schema_field({"type": "string", "format": "binary"})(ImageFileField)


def _validation_error(
    exc: EvolinkValidationError, rename: dict[str, str] | None = None
) -> serializers.ValidationError:
    rename = rename or {}
    return serializers.ValidationError({rename.get(k, k): v for k, v in exc.errors.items()})


# The fields both ways of creating a task share. Factories rather than a base class:
# DRF puts a base class's fields first, which would reorder the OpenAPI schema.


def _prompt_field() -> serializers.CharField:
    return serializers.CharField(
        help_text=gettext_lazy("What to make of the images (1 to 2000 characters).")
    )


def _n_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False, min_value=1, max_value=4,
        help_text=gettext_lazy("Number of images to make (1-4, default 1)."),
    )


def _model_field() -> serializers.ChoiceField:
    return serializers.ChoiceField(
        choices=sorted(catalogue.CATALOGUE), required=False,
        help_text=gettext_lazy("Evolink model (default EVOLINK['DEFAULT_MODEL'])."),
    )


class TaskCreateSerializer(serializers.Serializer):
    """``POST tasks/`` with JSON: ``prompt``, ``image_urls`` (1-2 URLs), ``n``, ``model``."""

    prompt = _prompt_field()
    image_urls = serializers.ListField(
        child=serializers.URLField(),
        min_length=1,
        max_length=2,
        help_text=gettext_lazy("1 or 2 public http(s) URLs of reference images."),
    )
    n = _n_field()
    model = _model_field()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # The catalogue checks every field and says what is allowed; DRF's own field
        # checks are only declared for the schema.
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": [_("Send a JSON object with prompt and image_urls.")]}
            )
        try:
            return catalogue.validate_request(
                prompt=data.get("prompt"),
                image_urls=data.get("image_urls"),
                n=data.get("n"),
                model=data.get("model"),
            )
        except EvolinkValidationError as exc:
            raise _validation_error(exc)


def _form_int(value: Any) -> Any:
    """``n`` of a multipart form arrives as text: turn whole numbers into int."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return value


class TaskUploadSerializer(serializers.Serializer):
    """``POST tasks/`` with multipart/form-data: ``prompt``, ``images`` (1-2 files), ``n``.

    Each file is checked with Pillow (size, format judged from the content,
    transparency, sides, truncation, decompression bombs) before anything is stored or
    sent. Errors about the files are keyed ``images``.
    """

    prompt = _prompt_field()
    images = serializers.ListField(
        child=ImageFileField(),
        min_length=1,
        max_length=2,
        help_text=gettext_lazy(
            "1 or 2 image files: jpeg, png, bmp or webp, at most 10 MB, 384 to 5000 px "
            "per side, without transparency."
        ),
    )
    n = _n_field()
    model = _model_field()

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, QueryDict):
            files: list[Any] = data.getlist("images")  # uploaded files (or stray text)
            values = {k: data.get(k) for k in ("prompt", "n", "model", "image_urls")}
        elif isinstance(data, Mapping):
            files = data.get("images") or []
            files = files if isinstance(files, (list, tuple)) else [files]
            values = dict(data)
        else:
            raise serializers.ValidationError(
                {"non_field_errors": [_("Send a multipart form with prompt and images.")]}
            )
        if values.get("image_urls"):
            raise serializers.ValidationError(
                {"image_urls": [_("Send either image_urls (JSON) or images (multipart files), "
                                  "not both.")]}
            )
        try:
            spec = catalogue.get_spec(values.get("model"))
        except EvolinkValidationError as exc:
            raise _validation_error(exc)
        n = _form_int(values.get("n"))
        n = spec.default_n if n in (None, "") else n
        errors: dict[str, list[str]] = {}
        for field, messages in (
            ("prompt", catalogue.prompt_errors(spec, values.get("prompt"))),
            ("n", catalogue.n_errors(spec, n)),
        ):
            if messages:
                errors[field] = messages
        files = [f for f in files if f not in (None, "")]
        image_errors = catalogue.count_errors(spec, len(files))
        infos: list[dict] = []
        if not image_errors:
            for i, upload in enumerate(files, start=1):
                if not hasattr(upload, "read"):
                    image_errors.append(
                        _("Image %(i)d: send a file, not text.") % {"i": i}
                    )
                    continue
                label = _("Image %(i)d (%(name)s)") % {"i": i, "name": getattr(upload, "name", "")}
                messages, info = catalogue.image_file_errors(spec, upload, label=label)
                image_errors.extend(messages)
                infos.append(info)
        if image_errors:
            errors["images"] = image_errors
        if errors:
            raise serializers.ValidationError(errors)
        return {
            "model": spec.name,
            "prompt": values["prompt"],
            "n": n,
            "images": list(zip(files, infos, strict=True)),
        }


class TaskListQuerySerializer(serializers.Serializer):
    """Query parameters of ``GET tasks/``."""

    status = serializers.CharField(
        required=False,
        help_text=gettext_lazy(
            "Only tasks with this status: queued, pending, processing, completed, failed "
            "or cancelled."
        ),
    )

    def validate_status(self, value: str) -> str:
        if value not in Status.values:
            raise serializers.ValidationError(
                _("Unknown status %(got)r. Allowed: %(allowed)s.")
                % {"got": value[:32], "allowed": ", ".join(Status.values)}
            )
        return value
