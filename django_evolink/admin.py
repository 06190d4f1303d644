"""The Django admin of django-evolink: browse, search, audit and act on tasks.

The mirrored task is Evolink's truth, not a form: every page is read-only (no add,
no change, deleting for superusers only). What staff can do goes through the same
code paths as everything else (``services.refresh_task``, ``services.create_task``,
``transitions.apply_payload``, ``tasks.enqueue_downloads``), as admin actions that
report per task and never fail the page when Evolink is down.

The changelists stay fast on large tables: a fixed number of queries per page
(``list_select_related``, a sliced prefetch of the first result image), no full-table
count (:class:`EstimatedCountPaginator`) and filters that do not scan the table for
their choices. See ``docs/admin.md``.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import Prefetch, QuerySet, Sum
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from . import conf
from .core.models import (
    EventSource,
    GeneratedImage,
    ImageTask,
    Status,
    TaskEvent,
)
from .evolink import catalogue
from .exceptions import EvolinkError, EvolinkValidationError, redact

logger = logging.getLogger("django_evolink.admin")

#: Header and payload keys whose values are never shown (matched case-insensitively).
SECRET_KEY_PATTERN = re.compile(
    r"authori[sz]ation|cookie|token|secret|signature|password|passwd|api[-_]?key|"
    r"credential|callback[-_]?url|session",
    re.IGNORECASE,
)
REDACTED = "[redacted]"

#: CSS class of each status badge.
STATUS_CLASSES = {
    Status.QUEUED: "queued",
    Status.PENDING: "pending",
    Status.PROCESSING: "processing",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "cancelled",
}


# --------------------------------------------------------------------------- helpers


def redact_data(value: Any, secret: str | None = None) -> Any:
    """A copy of ``value`` (JSON data) with secrets removed.

    Values under keys that name a secret (``Authorization``, ``Cookie``, ``token``,
    ``callback_url``, ...) are replaced by ``[redacted]``; every string is passed
    through :func:`~django_evolink.exceptions.redact` (API keys, bearer tokens and
    ``secret`` itself).
    """
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            if isinstance(key, str) and SECRET_KEY_PATTERN.search(key) and item not in (None, ""):
                cleaned[key] = REDACTED
            else:
                cleaned[key] = redact_data(item, secret)
        return cleaned
    if isinstance(value, (list, tuple)):
        return [redact_data(item, secret) for item in value]
    if isinstance(value, str):
        return redact(value, secret)
    return value


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON in a ``<pre>``, secrets redacted."""
    if value is None or value == {} or value == []:
        return format_html('<span class="evolink-muted">{}</span>', gettext("(empty)"))
    secret = conf.api_key()
    text = json.dumps(
        redact_data(value, secret), indent=2, sort_keys=True, ensure_ascii=False, default=str
    )
    return format_html('<pre class="evolink-json">{}</pre>', redact(text, secret))


def safe_text(value: Any) -> str:
    """``value`` as text with secrets redacted (for anything shown on a page)."""
    return redact(str(value), conf.api_key()) if value else ""


def format_credits(value: Decimal | None) -> str:
    """``1.2000`` -> ``"1.2"``; ``None`` -> ``""``."""
    if value is None:
        return ""
    text = format(Decimal(value).normalize(), "f")
    return text


def status_badge(status: str, label: str | None = None) -> SafeString:
    """A coloured badge for a task status."""
    if not status:
        return format_html('<span class="evolink-muted">{}</span>', "–")
    if label is None:
        try:
            label = Status(status).label
        except ValueError:
            label = status
    return format_html(
        '<span class="evolink-badge evolink-status-{}">{}</span>',
        STATUS_CLASSES.get(status, "unknown"),
        label,
    )


def progress_bar(progress: int, status: str) -> SafeString:
    value = max(0, min(100, int(progress or 0)))
    return format_html(
        '<span class="evolink-progress evolink-progress-{}" title="{}%" role="progressbar" '
        'aria-valuenow="{}" aria-valuemin="0" aria-valuemax="100">'
        '<span class="evolink-progress-bar" style="width: {}%"></span></span>'
        '<span class="evolink-progress-label">{}%</span>',
        STATUS_CLASSES.get(status, "unknown"),
        value,
        value,
        value,
        value,
    )


def thumbnail(url: str | None, *, size: str = "small", link: bool = True,
              title: str = "") -> SafeString:
    """An ``<img>`` thumbnail of ``url`` (linked to the image), or a dash."""
    if not url:
        return format_html('<span class="evolink-muted">{}</span>', "–")
    url = safe_text(url)
    img = format_html(
        '<img src="{}" class="evolink-thumb evolink-thumb-{}" alt="{}" title="{}" '
        'loading="lazy" referrerpolicy="no-referrer">',
        url,
        size,
        title,
        title,
    )
    if not link:
        return img
    return format_html(
        '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, img
    )


def storage_url(name: str) -> str | None:
    """The URL of a stored input copy, or None when the storage cannot tell."""
    try:
        return conf.storage().url(name)
    except Exception:  # a storage without URLs, or a misconfigured one
        logger.debug("no URL for stored file %r", name, exc_info=True)
        return None


def input_url(task: ImageTask) -> str | None:
    """The URL of the first input of ``task``: its stored copy, else the first image URL."""
    files = task.input_files or []
    if files and isinstance(files[0], str):
        url = storage_url(files[0])
        if url:
            return url
    urls = task.image_urls or []
    if urls and isinstance(urls[0], str):
        return urls[0]
    return None


def source_link_alive(image: GeneratedImage, now=None) -> bool:
    """Whether Evolink's link to ``image`` has not expired yet (as far as we know)."""
    if not image.source_url:
        return False
    expires = image.source_expires_at
    return expires is None or expires > (now or timezone.now())


def image_url(image: GeneratedImage | None) -> str | None:
    """The stored copy's URL, else Evolink's link while it has not expired."""
    if image is None:
        return None
    if image.file:
        try:
            return image.file.url
        except Exception:
            logger.debug("no URL for stored image %s", image.pk, exc_info=True)
    if source_link_alive(image):
        return image.source_url
    return None


def user_label(user: Any) -> str:
    if user is None:
        return ""
    return str(user.get_username() if hasattr(user, "get_username") else user)


def user_search_fields() -> list[str]:
    """``user__<USERNAME_FIELD>`` and ``user__email`` when the user model has them."""
    user_model = get_user_model()
    names = {f.name for f in user_model._meta.get_fields()}
    fields = [f"user__{user_model.USERNAME_FIELD}"]
    email = getattr(user_model, "EMAIL_FIELD", "email")
    if email in names and email != user_model.USERNAME_FIELD:
        fields.append(f"user__{email}")
    return fields


# ------------------------------------------------------------------------- paginator


class EstimatedCountPaginator(Paginator):
    """A paginator that never counts a whole large table.

    * On PostgreSQL, the count of an unfiltered queryset is the planner's estimate
      (``pg_class.reltuples``) when that estimate is at least ``count_limit``.
    * Otherwise the count is exact up to ``count_limit`` rows (a bounded
      ``SELECT COUNT(*) FROM (... LIMIT count_limit + 1)``); beyond it the count is
      reported as ``count_limit + 1`` with :attr:`count_is_exact` False, and the page
      links stop there (filters and the date hierarchy narrow the list).

    Pages past an estimated end are shown empty rather than refused.
    """

    #: Number of rows counted exactly before the count is capped.
    count_limit = 10_000

    def __init__(self, object_list: Any, per_page: int, orphans: int = 0,
                 allow_empty_first_page: bool = True, *, count_limit: int | None = None,
                 **kwargs: Any) -> None:
        if count_limit is not None:
            self.count_limit = count_limit
        self.count_is_exact = True
        self.count_is_estimate = False
        super().__init__(object_list, per_page, orphans, allow_empty_first_page, **kwargs)

    def _table_estimate(self, queryset: QuerySet) -> int | None:
        connection = connections[queryset.db]
        if connection.vendor != "postgresql" or queryset.query.where:
            return None
        if queryset.query.distinct or queryset.query.combinator:
            return None
        table = queryset.model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(table)],
            )
            row = cursor.fetchone()
        if not row or row[0] is None or row[0] < 0:
            return None  # never analysed
        return int(row[0])

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return super().count
        estimate = self._table_estimate(queryset)
        if estimate is not None and estimate >= self.count_limit:
            self.count_is_exact = False
            self.count_is_estimate = True
            return estimate
        bounded = queryset.order_by()[: self.count_limit + 1].count()
        if bounded > self.count_limit:
            self.count_is_exact = False
        return bounded

    def validate_number(self, number: Any) -> int:
        if self.count_is_exact:
            return super().validate_number(number)
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(gettext("That page number is not an integer"))
        if number < 1:
            raise EmptyPage(gettext("That page number is less than 1"))
        return number

    def page(self, number: Any):
        self.count  # noqa: B018 - decides count_is_exact before validating
        if self.count_is_exact:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        return self._get_page(self.object_list[bottom : bottom + self.per_page], number, self)


# --------------------------------------------------------------------------- filters


class ModelNameFilter(admin.SimpleListFilter):
    """Filter by Evolink model; choices come from the catalogue (no table scan)."""

    title = _("model")
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        names = set(catalogue.CATALOGUE)
        selected = self.value()
        if selected:
            names.add(selected)
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(model=self.value())
        return queryset


class LocalErrorFilter(admin.SimpleListFilter):
    """Failed tasks by the local decision that failed them; fixed choices (no table scan).

    ``outcome_unknown`` is the one an operator must act on: the create was sent, its
    answer was lost, and Evolink may have made and billed the task (see docs/reliability.md).
    """

    title = _("local error")
    parameter_name = "error_code"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [
            ("outcome_unknown", _("Outcome unknown: check the Evolink dashboard")),
            ("timeout", _("Timed out")),
            ("not_found_error", _("Unknown to Evolink")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(error_code=self.value())
        return queryset


class TaskUserFilter(admin.RelatedFieldListFilter):
    """Filter by user; offers only users who have tasks, at most ``max_choices`` of them.

    Any user can still be chosen by the URL (``?user__id__exact=<pk>``) or found with
    the search box (user name, e-mail).
    """

    max_choices = 100

    def field_choices(self, field, request, model_admin):
        user_ids = (
            ImageTask.objects.order_by()
            .filter(user__isnull=False)
            .values("user")
            .distinct()[: self.max_choices]
        )
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(
            include_blank=False, limit_choices_to={"pk__in": user_ids}, ordering=ordering
        )


# ------------------------------------------------------------------------- inlines


class ReadOnlyInlineMixin:
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class GeneratedImageInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = GeneratedImage
    verbose_name = _("result image")
    verbose_name_plural = _("result images")
    fields = ("index", "preview", "stored_file", "original_link", "size", "download_state")
    readonly_fields = fields
    ordering = ("index",)

    @admin.display(description=_("preview"))
    def preview(self, obj: GeneratedImage) -> SafeString:
        return thumbnail(image_url(obj), size="medium")

    @admin.display(description=_("stored file"))
    def stored_file(self, obj: GeneratedImage) -> SafeString:
        if not obj.file:
            return format_html('<span class="evolink-muted">{}</span>', gettext("not stored yet"))
        try:
            url = obj.file.url
        except Exception:
            return format_html("<code>{}</code>", obj.file.name)
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, obj.file.name
        )

    @admin.display(description=_("Evolink link"))
    def original_link(self, obj: GeneratedImage) -> SafeString:
        if not obj.source_url:
            return format_html("{}", "–")
        if obj.source_expires_at is None:
            expiry = gettext("expiry unknown")
        elif source_link_alive(obj):
            expiry = gettext("expires %(when)s") % {
                "when": timezone.localtime(obj.source_expires_at).strftime("%Y-%m-%d %H:%M")
            }
        else:
            expiry = gettext("expired %(when)s") % {
                "when": timezone.localtime(obj.source_expires_at).strftime("%Y-%m-%d %H:%M")
            }
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>'
            '<br><span class="evolink-muted">{}</span>',
            safe_text(obj.source_url),
            Truncator(safe_text(obj.source_url)).chars(60),
            expiry,
        )

    @admin.display(description=_("size"))
    def size(self, obj: GeneratedImage) -> str:
        if obj.width and obj.height:
            return f"{obj.width}×{obj.height}"
        return "–"

    @admin.display(description=_("download"))
    def download_state(self, obj: GeneratedImage) -> SafeString:
        if obj.downloaded_at:
            return format_html(
                '<span class="evolink-ok">{}</span>',
                gettext("downloaded %(when)s") % {
                    "when": timezone.localtime(obj.downloaded_at).strftime("%Y-%m-%d %H:%M")
                },
            )
        parts = [gettext("attempts: %(n)d") % {"n": obj.download_attempts}]
        if obj.download_error:
            parts.append(safe_text(obj.download_error))
        return format_html('<span class="evolink-muted">{}</span>', " · ".join(parts))


class TaskEventColumns:
    """Read-only columns of an event, shared by its inline and its own admin."""

    @admin.display(description=_("status before → after"))
    def transition(self, obj: TaskEvent) -> SafeString:
        return format_html("{} → {}", status_badge(obj.status_before),
                           status_badge(obj.status_after))

    @admin.display(description=_("note"))
    def note_text(self, obj: TaskEvent) -> str:
        return safe_text(obj.note) or "–"

    @admin.display(description=_("payload"))
    def payload_json(self, obj: TaskEvent) -> SafeString:
        return pretty_json(obj.payload)

    @admin.display(description=_("headers"))
    def headers_json(self, obj: TaskEvent) -> SafeString:
        return pretty_json(obj.headers)


class TaskEventInline(ReadOnlyInlineMixin, TaskEventColumns, admin.StackedInline):
    model = TaskEvent
    verbose_name = _("event")
    verbose_name_plural = _("events (every delivery, newest first)")
    fields = (
        ("received_at", "source", "transition", "changed", "outcome"),
        "remote_addr",
        "note_text",
        "payload_json",
        "headers_json",
    )
    readonly_fields = (
        "received_at", "source", "transition", "changed", "outcome", "remote_addr",
        "note_text", "payload_json", "headers_json",
    )
    ordering = ("-received_at", "-id")
    classes = ("evolink-events",)


def _or_task_id(result: QuerySet, queryset: QuerySet, search_term: str | None,
               lookup: str) -> QuerySet:
    """``result`` plus the rows of ``queryset`` whose ``lookup`` is the task UUID searched for."""
    term = (search_term or "").strip()
    if term:
        try:
            task_id = uuid.UUID(term)
        except ValueError:
            pass
        else:
            result = result | queryset.filter(**{lookup: task_id})
    return result


# --------------------------------------------------------------------- base admin


class ReadOnlyMirrorAdmin(admin.ModelAdmin):
    """Read-only: nobody adds or edits a mirror; superusers may delete."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    #: Rows counted exactly before the changelist count is capped/estimated.
    exact_count_limit = EstimatedCountPaginator.count_limit
    #: Most rows one action processes (actions talk to Evolink synchronously).
    max_action_rows = 100

    class Media:
        css = {"all": ("django_evolink/admin.css",)}

    def get_paginator(self, request, queryset, per_page, orphans=0,
                      allow_empty_first_page=True):
        return self.paginator(queryset, per_page, orphans, allow_empty_first_page,
                              count_limit=self.exact_count_limit)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser) and super().has_delete_permission(request, obj)

    def has_evolink_change_permission(self, request: HttpRequest) -> bool:
        """Who may run actions that change a task (refresh, download, re-apply)."""
        opts = ImageTask._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def _limit_rows(self, request: HttpRequest, queryset: QuerySet) -> list | None:
        rows = list(queryset[: self.max_action_rows + 1])
        if len(rows) > self.max_action_rows:
            self.message_user(
                request,
                gettext(
                    "Select at most %(max)d rows for this action (it talks to Evolink "
                    "for each); nothing was done."
                ) % {"max": self.max_action_rows},
                messages.ERROR,
            )
            return None
        return rows

    def _attempt(
        self,
        request: HttpRequest,
        work: Callable[[], Any],
        *,
        failure: str,
        subject: dict[str, Any],
        log: tuple[Any, ...],
        on_evolink_error: Callable[[EvolinkError], str] | None = None,
    ) -> Any:
        """Run one selected row's ``work()``; answer its result, or ``_FAILED`` if it raised.

        With ``on_evolink_error``, an :class:`EvolinkError` is reported as the ERROR
        message it answers. Any other exception is logged with its traceback
        (``logger.exception(*log)``) and reported as
        ``failure % {**subject, "error": "<type>: <text>"}``.
        """
        try:
            return work()
        except Exception as exc:
            if on_evolink_error is not None and isinstance(exc, EvolinkError):
                text = on_evolink_error(exc)
            else:
                logger.exception(*log)
                text = failure % {**subject, "error": safe_text(f"{type(exc).__name__}: {exc}")}
            self.message_user(request, text, messages.ERROR)
            return _FAILED

    def _done(self, request: HttpRequest, obj: Any, change_message: str, message: str,
              level: int = messages.SUCCESS) -> None:
        """Record a successful action on ``obj`` in its history and tell the user."""
        self.log_change(request, obj, change_message)
        self.message_user(request, message, level)


#: What :meth:`ReadOnlyMirrorAdmin._attempt` answers when the work raised.
_FAILED = object()


# ---------------------------------------------------------------- ImageTask admin


@admin.register(ImageTask)
class ImageTaskAdmin(ReadOnlyMirrorAdmin):
    list_display = (
        "short_id",
        "user_display",
        "model",
        "status_display",
        "progress_display",
        "prompt_excerpt",
        "input_thumbnail",
        "result_thumbnail",
        "credits_display",
        "created_at",
    )
    list_display_links = ("short_id",)
    list_filter = (
        "status",
        LocalErrorFilter,
        ModelNameFilter,
        "created_at",
        ("user", TaskUserFilter),
    )
    list_select_related = ("user",)
    search_help_text = _(
        "Search by prompt, Evolink id, task id, user name or e-mail."
    )
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    list_per_page = 50
    actions = ("refresh_from_evolink", "download_missing_images", "resubmit_as_new_task")
    inlines = (GeneratedImageInline, TaskEventInline)
    change_list_template = "admin/django_evolink/imagetask/change_list.html"
    change_form_template = "admin/django_evolink/imagetask/change_form.html"
    #: Seconds the Evolink credit balance is cached (failures included).
    credits_cache_seconds = 60
    #: Connect/read timeout of the balance request, seconds (no retries).
    credits_timeout = 5.0
    credits_cache_key = "django_evolink:admin:credits"

    fieldsets_base = (
        (
            _("Task"),
            {
                "fields": (
                    ("id", "evolink_id"),
                    ("user", "model"),
                    ("status_display", "progress_display"),
                    ("created_at", "updated_at", "completed_at"),
                )
            },
        ),
        (
            _("Request"),
            {"fields": ("prompt_display", "n", "image_urls_display", "input_files_display")},
        ),
        (
            _("Usage"),
            {
                "fields": (
                    ("billing_rule", "credits_reserved", "user_group"),
                    ("estimated_time", "can_cancel"),
                )
            },
        ),
    )
    fieldset_error = (_("Error"), {"fields": ("error_display",)})
    fieldset_bookkeeping = (
        _("Bookkeeping (local)"),
        {
            "classes": ("collapse",),
            "fields": (
                ("submit_started_at", "submitted_at"),
                ("callback_received_at", "images_stored_at"),
                ("next_poll_at", "last_polled_at"),
                ("poll_count", "poll_error_count"),
                "lease_until",
                "events_link",
            ),
        },
    )
    readonly_fields = (
        "id", "evolink_id", "user", "model", "status_display", "progress_display",
        "created_at", "updated_at", "completed_at", "prompt_display", "n", "image_urls_display",
        "input_files_display", "billing_rule", "credits_reserved", "user_group",
        "estimated_time", "can_cancel", "error_display", "submit_started_at", "submitted_at",
        "callback_received_at", "images_stored_at", "next_poll_at", "last_polled_at",
        "poll_count", "poll_error_count", "lease_until", "events_link",
    )

    # ---------------------------------------------------------------- queryset

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("user")
            .prefetch_related(
                Prefetch(
                    "images",
                    queryset=GeneratedImage.objects.order_by("index")[:1],
                    to_attr="first_images",
                )
            )
        )

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return ["prompt", "=evolink_id", *user_search_fields()]

    def get_search_results(self, request, queryset, search_term):
        result, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return _or_task_id(result, queryset, search_term, "pk"), may_have_duplicates

    def get_fieldsets(self, request: HttpRequest, obj: Any = None):
        sets = list(self.fieldsets_base)
        if obj is not None and (obj.error_code or obj.error_message):
            sets.insert(1, self.fieldset_error)
        sets.append(self.fieldset_bookkeeping)
        return sets

    # ---------------------------------------------------------------- columns

    @admin.display(description=_("task"), ordering="id")
    def short_id(self, obj: ImageTask) -> str:
        return str(obj.pk)[:8]

    @admin.display(description=_("user"), ordering="user")
    def user_display(self, obj: ImageTask) -> str:
        return user_label(obj.user) or "–"

    @admin.display(description=_("status"), ordering="status")
    def status_display(self, obj: ImageTask) -> SafeString:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description=_("progress"), ordering="progress")
    def progress_display(self, obj: ImageTask) -> SafeString:
        return progress_bar(obj.progress, obj.status)

    @admin.display(description=_("prompt"))
    def prompt_excerpt(self, obj: ImageTask) -> SafeString:
        return format_html(
            '<span class="evolink-prompt" title="{}">{}</span>',
            Truncator(safe_text(obj.prompt)).chars(300),
            Truncator(safe_text(obj.prompt)).chars(60),
        )

    @admin.display(description=_("input"))
    def input_thumbnail(self, obj: ImageTask) -> SafeString:
        return thumbnail(input_url(obj), title=gettext("input image"))

    @admin.display(description=_("result"))
    def result_thumbnail(self, obj: ImageTask) -> SafeString:
        images = getattr(obj, "first_images", None)
        if images is None:  # not fetched through get_queryset
            images = list(obj.images.order_by("index")[:1])
        return thumbnail(image_url(images[0] if images else None), title=gettext("result"))

    @admin.display(description=_("credits reserved"), ordering="credits_reserved")
    def credits_display(self, obj: ImageTask) -> str:
        return format_credits(obj.credits_reserved) or "–"

    # ---------------------------------------------------------------- change page

    @admin.display(description=_("prompt"))
    def prompt_display(self, obj: ImageTask) -> SafeString:
        return format_html('<div class="evolink-prompt-full">{}</div>', safe_text(obj.prompt))

    @admin.display(description=_("image URLs"))
    def image_urls_display(self, obj: ImageTask) -> SafeString:
        urls = [safe_text(u) for u in (obj.image_urls or []) if isinstance(u, str)]
        if not urls:
            return format_html("{}", "–")
        return format_html(
            '<div class="evolink-inputs">{}</div>',
            format_html_join(
                "",
                '<div class="evolink-input">{}<br><a href="{}" target="_blank" '
                'rel="noopener noreferrer">{}</a></div>',
                ((thumbnail(u, size="medium"), u, Truncator(u).chars(80)) for u in urls),
            ),
        )

    @admin.display(description=_("stored input copies"))
    def input_files_display(self, obj: ImageTask) -> SafeString:
        names = [n for n in (obj.input_files or []) if isinstance(n, str)]
        if not names:
            return format_html("{}", "–")
        rows = []
        for name in names:
            url = storage_url(name)
            rows.append((thumbnail(url, size="medium"), name))
        return format_html(
            '<div class="evolink-inputs">{}</div>',
            format_html_join("", '<div class="evolink-input">{}<br><code>{}</code></div>', rows),
        )

    @admin.display(description=_("error"))
    def error_display(self, obj: ImageTask) -> SafeString:
        if not (obj.error_code or obj.error_message):
            return format_html("{}", "–")
        return format_html(
            '<div class="evolink-error"><strong>{}</strong><br>{}</div>',
            obj.error_code or gettext("error"),
            safe_text(obj.error_message),
        )

    @admin.display(description=_("all events"))
    def events_link(self, obj: ImageTask) -> SafeString:
        url = reverse("admin:django_evolink_taskevent_changelist")
        return format_html('<a href="{}?task__id__exact={}">{}</a>', url, obj.pk,
                           gettext("Open this task's events in the event list"))

    # ---------------------------------------------------------------- changelist

    def get_urls(self):
        from .admin_views import usage_view

        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "usage/",
                self.admin_site.admin_view(lambda request: usage_view(request, self)),
                name="{}_{}_usage".format(*info),
            ),
            path(
                "<path:object_id>/evolink-action/<str:action>/",
                self.admin_site.admin_view(self.object_action_view),
                name="{}_{}_object_action".format(*info),
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if isinstance(context, dict) and context.get("cl") is not None:
            cl = context["cl"]
            total = cl.queryset.order_by().aggregate(total=Sum("credits_reserved"))["total"]
            context["evolink_filtered_credits"] = format_credits(total) or "0"
            context["evolink_count_is_exact"] = getattr(cl.paginator, "count_is_exact", True)
            context["evolink_count_is_estimate"] = getattr(
                cl.paginator, "count_is_estimate", False
            )
            context["evolink_balance"] = self.credit_balance()
            context["evolink_usage_url"] = reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_usage"
            )
        return response

    def credit_balance(self) -> dict[str, Any]:
        """Evolink's credit balance for the changelist, cached ``credits_cache_seconds``.

        Never raises: when Evolink cannot be asked the answer says why
        (``{"ok": False, "error": ...}``).
        """
        cached = cache.get(self.credits_cache_key)
        if cached is not None:
            return cached
        balance = fetch_credit_balance(timeout=self.credits_timeout)
        balance["checked_at"] = timezone.now()
        cache.set(self.credits_cache_key, balance, self.credits_cache_seconds)
        return balance

    # ---------------------------------------------------------------- actions

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return self.has_evolink_change_permission(request)

    def has_download_permission(self, request: HttpRequest) -> bool:
        return self.has_evolink_change_permission(request)

    def has_resubmit_permission(self, request: HttpRequest) -> bool:
        """Resubmitting spends credits: it needs the *add* permission of image tasks."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.add_{opts.model_name}")

    @admin.action(description=_("Refresh from Evolink"), permissions=("refresh",))
    def refresh_from_evolink(self, request: HttpRequest, queryset: QuerySet) -> None:
        from .core import services

        rows = self._limit_rows(request, queryset)
        for task in rows or ():
            short = str(task.pk)[:8]
            if not task.evolink_id:
                self.message_user(
                    request,
                    gettext("%(task)s: never accepted by Evolink, nothing to refresh.")
                    % {"task": short},
                    messages.WARNING,
                )
                continue
            before = task.status
            result = self._attempt(
                request,
                lambda task=task: services.refresh_task(task, source=EventSource.ADMIN),
                failure=gettext("%(task)s: refresh failed: %(error)s"),
                subject={"task": short},
                log=("admin refresh of task %s failed", task.pk),
                on_evolink_error=lambda exc, short=short: (
                    gettext("%(task)s: Evolink could not be asked: %(error)s")
                    % {"task": short, "error": safe_text(exc)}
                ),
            )
            if result is _FAILED:
                continue
            self._done(
                request, task, gettext("Refreshed from Evolink."),
                gettext("%(task)s: refreshed, status %(before)s → %(after)s.")
                % {"task": short, "before": before, "after": task.status},
            )

    @admin.action(description=_("Download missing images"), permissions=("download",))
    def download_missing_images(self, request: HttpRequest, queryset: QuerySet) -> None:
        from .background import queue as background

        rows = self._limit_rows(request, queryset)
        for task in rows or ():
            short = str(task.pk)[:8]
            if task.status != Status.COMPLETED:
                self.message_user(
                    request,
                    gettext("%(task)s: not completed (%(status)s), no images to download.")
                    % {"task": short, "status": task.status},
                    messages.WARNING,
                )
                continue
            missing_images = list(GeneratedImage.objects.filter(task=task, file=""))
            if not missing_images:
                self.message_user(
                    request,
                    gettext("%(task)s: every image is already stored.") % {"task": short},
                    messages.INFO,
                )
                continue
            now = timezone.now()
            alive = [image.pk for image in missing_images if source_link_alive(image, now)]
            if not alive:
                self.message_user(
                    request,
                    gettext("%(task)s: Evolink's links to the missing images have expired; "
                            "they cannot be downloaded any more.") % {"task": short},
                    messages.WARNING,
                )
                continue
            missing = len(alive)
            # an admin asks for a try now: clear a recorded failure and a scheduled retry
            GeneratedImage.objects.filter(pk__in=alive, file="").update(
                download_error="", next_download_at=None
            )
            result = self._attempt(
                request,
                lambda task=task: background.enqueue_downloads(task.pk),
                failure=gettext("%(task)s: the download could not be queued: %(error)s"),
                subject={"task": short},
                log=("admin: enqueueing downloads of task %s failed", task.pk),
            )
            if result is _FAILED:
                continue
            self._done(
                request, task, gettext("Queued the download of missing images."),
                ngettext(
                    "%(task)s: download of %(count)d missing image queued.",
                    "%(task)s: download of %(count)d missing images queued.",
                    missing,
                ) % {"task": short, "count": missing},
            )

    @admin.action(description=_("Resubmit as a new task"), permissions=("resubmit",))
    def resubmit_as_new_task(self, request: HttpRequest, queryset: QuerySet) -> None:
        from .core import services

        rows = self._limit_rows(request, queryset)
        for task in rows or ():
            short = str(task.pk)[:8]
            new = self._attempt(
                request,
                lambda task=task: services.create_task(
                    prompt=task.prompt,
                    image_urls=list(task.image_urls or []),
                    n=task.n,
                    model=task.model,
                    user=task.user,
                    input_files=list(task.input_files or []),
                ),
                failure=gettext("%(task)s: resubmission failed: %(error)s"),
                subject={"task": short},
                log=("admin resubmit of task %s failed", task.pk),
                on_evolink_error=lambda exc, task=task: self._resubmit_refused(request, task, exc),
            )
            if new is _FAILED:
                continue
            self.log_addition(request, new, gettext("Resubmitted from %(task)s.")
                              % {"task": task.pk})
            url = reverse("admin:django_evolink_imagetask_change", args=[new.pk])
            self._done(
                request, task, gettext("Resubmitted as %(new)s.") % {"new": new.pk},
                format_html(
                    '{} <a href="{}">{}</a> ({})',
                    gettext("%(task)s: resubmitted as new task") % {"task": short},
                    url,
                    str(new.pk)[:8],
                    new.get_status_display(),
                ),
            )

    def _resubmit_refused(self, request: HttpRequest, task: ImageTask,
                          exc: EvolinkError) -> str:
        """The ERROR message of a resubmission Evolink (or the catalogue) refused."""
        short = str(task.pk)[:8]
        if isinstance(exc, EvolinkValidationError):
            return gettext("%(task)s: not resubmitted, the request is no longer valid: "
                           "%(error)s") % {"task": short, "error": safe_text(exc)}
        new = getattr(exc, "task", None)
        if new is None:
            return gettext("%(task)s: not resubmitted: %(error)s") % {
                "task": short, "error": safe_text(exc)}
        # the new task was recorded (and failed): keep its history
        self.log_addition(request, new, gettext("Resubmitted from %(task)s.") % {"task": task.pk})
        return gettext("%(task)s: new task %(new)s was refused by Evolink: %(error)s") % {
            "task": short, "new": str(new.pk)[:8], "error": safe_text(exc)}

    # ---------------------------------------------------------------- change-page buttons

    def object_actions(self, request: HttpRequest) -> list[tuple[str, str]]:
        """(name, label) of the actions offered as buttons on the change page."""
        actions = self.get_actions(request)
        return [(name, str(_action_description(actions[name]))) for name in self.actions
                if name in actions]

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        if obj is not None:
            context["evolink_object_actions"] = [
                (
                    reverse(
                        f"admin:{self.opts.app_label}_{self.opts.model_name}_object_action",
                        args=[obj.pk, name],
                    ),
                    label,
                )
                for name, label in self.object_actions(request)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def object_action_view(self, request: HttpRequest, object_id: str, action: str):
        return _object_action(self, request, object_id, action)


def _action_func(action: Any) -> Any:
    """The callable of an entry of ``get_actions()`` (an Action on Django 6.1+, a tuple before)."""
    return action.func if hasattr(action, "func") else action[0]


def _action_description(action: Any) -> Any:
    return action.description if hasattr(action, "description") else action[2]


def _object_action(model_admin: ImageTaskAdmin, request: HttpRequest, object_id: str,
                   action: str) -> HttpResponse:
    """Run one changelist action on one task from its change page, then go back."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    actions = model_admin.get_actions(request)
    if action not in actions:
        raise PermissionDenied
    obj = model_admin.get_object(request, object_id)
    if obj is None:
        raise Http404(gettext("No such image task."))
    func = _action_func(actions[action])
    queryset = model_admin.get_queryset(request).filter(pk=obj.pk)
    response = func(model_admin, request, queryset)
    if isinstance(response, HttpResponse):
        return response
    return HttpResponseRedirect(
        reverse("admin:django_evolink_imagetask_change", args=[obj.pk])
    )


def fetch_credit_balance(timeout: float = 5.0) -> dict[str, Any]:
    """Ask Evolink for the credit balance once (no retries, short time-outs).

    Returns ``{"ok": True, "user_remaining": ..., "user_used": ..., "token_remaining":
    ..., "unlimited": ...}`` or ``{"ok": False, "error": <text, key redacted>}``.
    """
    from .evolink.client import EvolinkClient

    try:
        client = EvolinkClient(
            connect_timeout=min(timeout, float(conf.get("CONNECT_TIMEOUT"))),
            read_timeout=min(timeout, float(conf.get("READ_TIMEOUT"))),
            max_retries=0,
        )
        try:
            answer = client.get_credits()
        finally:
            client.close()
    except EvolinkError as exc:
        return {"ok": False, "error": safe_text(exc)}
    except Exception as exc:  # never break the changelist
        logger.warning("admin: reading the Evolink credit balance failed", exc_info=True)
        return {"ok": False, "error": safe_text(type(exc).__name__)}
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        return {"ok": False, "error": gettext("Evolink's answer has no credit data.")}
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    token = data.get("token") if isinstance(data.get("token"), dict) else {}

    def number(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return None
        try:
            return format_credits(Decimal(str(value)))
        except Exception:
            return None

    return {
        "ok": True,
        "user_remaining": number(user.get("remaining_credits")),
        "user_used": number(user.get("used_credits")),
        "token_remaining": number(token.get("remaining_credits")),
        "token_used": number(token.get("used_credits")),
        "unlimited": token.get("unlimited_credits") is True,
    }


# ---------------------------------------------------------------- TaskEvent admin


@admin.register(TaskEvent)
class TaskEventAdmin(TaskEventColumns, ReadOnlyMirrorAdmin):
    list_display = (
        "received_at",
        "task_link",
        "source",
        "transition",
        "changed",
        "outcome",
        "note_excerpt",
    )
    list_display_links = ("received_at",)
    list_filter = ("source", "outcome", "changed", "received_at")
    list_select_related = ("task",)
    search_fields = ("=task__evolink_id", "note")
    search_help_text = _("Search by the task's Evolink id, task id or note.")
    date_hierarchy = "received_at"
    ordering = ("-received_at", "-id")
    list_per_page = 50
    actions = ("reapply_events",)
    fields = (
        ("task_link", "received_at"),
        ("source", "outcome", "changed"),
        ("transition", "remote_addr"),
        "note_text",
        "payload_json",
        "headers_json",
    )
    readonly_fields = (
        "task_link", "received_at", "source", "outcome", "changed", "transition",
        "remote_addr", "note_text", "payload_json", "headers_json",
    )

    def get_search_results(self, request, queryset, search_term):
        result, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return _or_task_id(result, queryset, search_term, "task_id"), may_have_duplicates

    @admin.display(description=_("task"), ordering="task")
    def task_link(self, obj: TaskEvent) -> SafeString:
        url = reverse("admin:django_evolink_imagetask_change", args=[obj.task_id])
        return format_html('<a href="{}">{}</a> {}', url, str(obj.task_id)[:8],
                           obj.task.evolink_id or "")

    @admin.display(description=_("note"))
    def note_excerpt(self, obj: TaskEvent) -> str:
        return Truncator(safe_text(obj.note)).chars(80)

    def has_reapply_permission(self, request: HttpRequest) -> bool:
        return self.has_evolink_change_permission(request)

    @admin.action(description=_("Re-apply the recorded delivery"), permissions=("reapply",))
    def reapply_events(self, request: HttpRequest, queryset: QuerySet) -> None:
        from .core.transitions import apply_payload

        rows = self._limit_rows(request, queryset.order_by("received_at", "id"))
        for event in rows or ():
            label = gettext("event %(event)s of %(task)s") % {
                "event": event.pk, "task": str(event.task_id)[:8]
            }
            if not isinstance(event.payload, dict):
                self.message_user(
                    request,
                    gettext("%(event)s: no recorded payload to re-apply.") % {"event": label},
                    messages.WARNING,
                )
                continue
            result = self._attempt(
                request,
                lambda event=event: apply_payload(
                    event.task,
                    event.payload,
                    source=EventSource.ADMIN,
                    note=f"re-applied event {event.pk}",
                ),
                failure=gettext("%(event)s: re-applying failed: %(error)s"),
                subject={"event": label},
                log=("admin re-apply of event %s failed", event.pk),
            )
            if result is _FAILED:
                continue
            level = messages.SUCCESS if result.changed else messages.INFO
            self._done(
                request, event.task, gettext("Re-applied event %(event)s.") % {"event": event.pk},
                gettext("%(event)s: re-applied (%(outcome)s), status %(before)s → %(after)s.")
                % {
                    "event": label,
                    "outcome": result.event.get_outcome_display()
                    if hasattr(result.event, "get_outcome_display") else result.outcome,
                    "before": result.old_status,
                    "after": result.new_status,
                },
                level,
            )


# ------------------------------------------------------------ GeneratedImage admin


class StoredFilter(admin.SimpleListFilter):
    title = _("stored")
    parameter_name = "stored"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> Iterable:
        return (("yes", _("Stored")), ("no", _("Not stored yet")))

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.exclude(file="")
        if self.value() == "no":
            return queryset.filter(file="")
        return queryset


@admin.register(GeneratedImage)
class GeneratedImageAdmin(ReadOnlyMirrorAdmin):
    list_display = ("preview", "task_link", "index", "size", "stored", "link_state",
                    "download_attempts", "error_excerpt", "created_at")
    list_display_links = ("index",)
    list_filter = (StoredFilter, "created_at")
    list_select_related = ("task",)
    search_fields = ("=task__evolink_id",)
    search_help_text = _("Search by the task's Evolink id.")
    ordering = ("-created_at", "task", "index")
    list_per_page = 50
    fields = (
        ("task_link", "index"),
        "preview",
        ("size", "stored", "downloaded_at"),
        "source_url",
        ("source_expires_at", "link_state"),
        ("download_attempts", "next_download_at"),
        "error_excerpt",
    )
    readonly_fields = (
        "task_link", "index", "preview", "size", "stored", "downloaded_at", "source_url",
        "source_expires_at", "link_state", "download_attempts", "next_download_at",
        "error_excerpt",
    )

    @admin.display(description=_("preview"))
    def preview(self, obj: GeneratedImage) -> SafeString:
        return thumbnail(image_url(obj))

    @admin.display(description=_("task"), ordering="task")
    def task_link(self, obj: GeneratedImage) -> SafeString:
        url = reverse("admin:django_evolink_imagetask_change", args=[obj.task_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.task_id)[:8])

    @admin.display(description=_("size"))
    def size(self, obj: GeneratedImage) -> str:
        return f"{obj.width}×{obj.height}" if obj.width and obj.height else "–"

    @admin.display(description=_("stored"), boolean=True)
    def stored(self, obj: GeneratedImage) -> bool:
        return bool(obj.file)

    @admin.display(description=_("Evolink link"))
    def link_state(self, obj: GeneratedImage) -> str:
        if obj.source_expires_at is None:
            return gettext("expiry unknown")
        return gettext("alive") if source_link_alive(obj) else gettext("expired")

    @admin.display(description=_("download error"))
    def error_excerpt(self, obj: GeneratedImage) -> str:
        return Truncator(safe_text(obj.download_error)).chars(120) or "–"


__all__ = [
    "EstimatedCountPaginator",
    "GeneratedImageAdmin",
    "ImageTaskAdmin",
    "TaskEventAdmin",
    "fetch_credit_balance",
    "pretty_json",
    "redact_data",
]
