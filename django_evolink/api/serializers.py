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
    """Why a task failed: Evolink's error code (or a local code) and a message; ``hint``
    (what to change) for the codes a user can fix, absent otherwise."""

    code = serializers.CharField()
    message = serializers.CharField()
    hint = serializers.CharField(
        required=False,
        help_text=gettext_lazy("What to change before trying again, for the errors a user "
                               "can fix (e.g. content_policy_violation)."),
    )


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
    params = serializers.DictField(
        read_only=True,
        help_text=gettext_lazy("The model's other parameters, as sent under Evolink's names."),
    )
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
            "params",
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


# The fields both ways of creating a task share, declared for the OpenAPI schema (the
# catalogue checks every field and says what is allowed). Made by a factory rather than
# a base class: DRF puts a base class's fields first, which would reorder the schema.
_HELP = {
    "prompt": gettext_lazy("What to make (the model's limit: see GET models/; 1 to 2000 "
                           "characters for wan2.5-image-to-image)."),
    "n": gettext_lazy("Number of images to make, for models that take n (default 1)."),
    "model": gettext_lazy("Evolink model (default EVOLINK['DEFAULT_MODEL']); GET models/ "
                          "lists the allowed ones and their parameters."),
}


def _optional(name: str, field_class: type[serializers.Field], **kwargs: Any) -> Any:
    """An optional field ``name`` of the create body, documented for the schema."""
    return field_class(required=False, help_text=_HELP[name], **kwargs)


def _split_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """``validate_request``'s arguments from a create body: the model's other parameters
    sit at the top level under Evolink's names and go to ``params``."""
    return {
        "model": data.get("model"),
        "prompt": data.get("prompt"),
        "image_urls": data.get("image_urls"),
        "n": data.get("n"),
        "params": {k: v for k, v in data.items()
                   if k not in ("model", "prompt", "image_urls", "n", "images")},
    }


class TaskCreateSerializer(serializers.Serializer):
    """``POST tasks/`` with JSON: ``model``, ``prompt``, ``image_urls``, ``n`` and the
    model's other parameters by Evolink's names (``size``, ``quality``, ...)."""

    prompt = _optional("prompt", serializers.CharField)
    image_urls = serializers.ListField(
        child=serializers.URLField(),
        required=False,
        help_text=gettext_lazy(
            "Public http(s) URLs of reference images (1 or 2 for wan2.5-image-to-image; "
            "none for text-to-image models)."
        ),
    )
    n = _optional("n", serializers.IntegerField, min_value=1)
    model = _optional("model", serializers.CharField)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        # The catalogue checks every field and says what is allowed; DRF's own field
        # checks are only declared for the schema.
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": [_("Send a JSON object with prompt and image_urls.")]}
            )
        try:
            return catalogue.validate_request(**_split_body(data))
        except EvolinkValidationError as exc:
            raise _validation_error(exc)


def _form_values(data: Any) -> tuple[list[Any], dict[str, Any]]:
    """The files and the other fields of a multipart form (one value per field)."""
    if isinstance(data, QueryDict):
        return data.getlist("images"), {k: data.get(k) for k in data if k != "images"}
    if isinstance(data, Mapping):
        files = data.get("images") or []
        return (list(files) if isinstance(files, (list, tuple)) else [files]), dict(data)
    raise serializers.ValidationError(
        {"non_field_errors": [_("Send a multipart form with prompt and images.")]}
    )


class TaskUploadSerializer(serializers.Serializer):
    """``POST tasks/`` with multipart/form-data: ``model``, ``prompt``, ``images`` (files),
    ``n`` and the model's other parameters as form fields (numbers, ``true``/``false``,
    JSON for objects).

    Each file is checked with Pillow against the model's image limits (size, format
    judged from the content, transparency, sides, pixels, truncation, decompression
    bombs) before anything is stored or sent. Errors about the files are keyed ``images``.
    """

    prompt = _optional("prompt", serializers.CharField)
    images = serializers.ListField(
        child=ImageFileField(),
        required=False,
        help_text=gettext_lazy(
            "Image files within the model's limits (wan2.5-image-to-image: 1 or 2 files, "
            "jpeg, png, bmp or webp, at most 10 MB, 384 to 5000 px per side, without "
            "transparency)."
        ),
    )
    n = _optional("n", serializers.IntegerField, min_value=1)
    model = _optional("model", serializers.CharField)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        files, values = _form_values(data)
        if values.get("image_urls"):
            raise serializers.ValidationError(
                {"image_urls": [_("Send either image_urls (JSON) or images (multipart files), "
                                  "not both.")]}
            )
        try:
            spec = catalogue.get_spec(values.get("model"))
        except EvolinkValidationError as exc:
            raise _validation_error(exc)
        values = {k: spec.form_value(k, v) for k, v in values.items()
                  if v not in (None, "") and k != "image_urls"}
        files = [f for f in files if f not in (None, "")]
        arguments = _split_body(values)
        arguments.pop("image_urls")
        errors: dict[str, list[str]] = {}
        cleaned: dict[str, Any] = {}
        try:
            cleaned = catalogue.validate_request(**arguments, uploads=len(files))
        except EvolinkValidationError as exc:
            errors = {("images" if k == "image_urls" else k): v for k, v in exc.errors.items()}
        infos: list[dict] = []
        if "images" not in errors:
            image_errors: list[str] = []
            for i, upload in enumerate(files, start=1):
                if not hasattr(upload, "read"):
                    image_errors.append(_("Image %(i)d: send a file, not text.") % {"i": i})
                    continue
                label = _("Image %(i)d (%(name)s)") % {"i": i, "name": getattr(upload, "name", "")}
                messages, info = catalogue.image_file_errors(spec, upload, label=label)
                image_errors.extend(messages)
                infos.append(info)
            if image_errors:
                errors["images"] = image_errors
        if errors:
            raise serializers.ValidationError(errors)
        cleaned.pop("image_urls", None)
        return {**cleaned, "images": list(zip(files, infos, strict=True))}


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
