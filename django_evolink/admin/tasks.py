"""The image task admin: the changelist (filters, search, balance, credits of the list),
the change page (request, usage, result images, events) and the usage view's URL.

Its actions are in :mod:`.actions`, the usage view in :mod:`.usage`, the balance in
:mod:`.balance`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.cache import cache
from django.db.models import Prefetch, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..core.models import GeneratedImage, ImageTask
from ..evolink import task_errors
from .actions import TaskActions
from .balance import fetch_credit_balance
from .base import ReadOnlyMirrorAdmin
from .display import (
    format_credits,
    image_url,
    input_url,
    progress_bar,
    safe_text,
    status_badge,
    storage_url,
    thumbnail,
    user_label,
)
from .events import TaskEventInline
from .filters import (
    LocalErrorFilter,
    ModelNameFilter,
    TaskUserFilter,
    or_task_id,
    task_search,
    user_search_fields,
)
from .images import GeneratedImageInline
from .usage import usage_view

if TYPE_CHECKING:
    from django_stubs_ext import FieldOpts, FieldsetSpec, StrOrPromise

    Fieldset = tuple[StrOrPromise | None, FieldOpts]


class ImageTaskAdmin(TaskActions, ReadOnlyMirrorAdmin):
    """Every image task: who asked what, where it stands, what it cost, what happened."""

    # Fits 1280 px beside the admin's sidebar and the filters: the progress bar sits under
    # the status badge, the model under the prompt (each column costs its header's width).
    list_display = (
        "short_id",
        "user_display",
        "status_progress",
        "prompt_excerpt",
        "thumbnails",
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
    actions = ("refresh_from_evolink", "download_missing_images", "resubmit_as_new_task",
               "rotate_callback_token")
    inlines = (GeneratedImageInline, TaskEventInline)
    change_list_template = "admin/django_evolink/imagetask/change_list.html"
    change_form_template = "admin/django_evolink/imagetask/change_form.html"
    #: Seconds the Evolink credit balance is cached (failures included).
    credits_cache_seconds = 60
    #: Connect/read timeout of the balance request, seconds (no retries).
    credits_timeout = 5.0
    credits_cache_key = "django_evolink:admin:credits"

    fieldsets_base: tuple[Fieldset, ...] = (
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
            {"fields": ("prompt_display", "n", "params_display", "image_urls_display",
                        "input_files_display")},
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
    fieldset_error: Fieldset = (_("Error"), {"fields": ("error_display",)})
    fieldset_bookkeeping: Fieldset = (
        _("Bookkeeping (local)"),
        {
            "classes": ("collapse",),
            "fields": (
                ("submit_started_at", "submitted_at"),
                ("callback_received_at", "images_stored_at"),
                ("next_poll_at", "last_polled_at"),
                ("poll_count", "poll_error_count"),
                "lease_until",
                "credits_estimated",
                "events_link",
            ),
        },
    )
    readonly_fields = (
        "id", "evolink_id", "user", "model", "status_display", "progress_display",
        "created_at", "updated_at", "completed_at", "prompt_display", "n", "params_display",
        "image_urls_display",
        "input_files_display", "billing_rule", "credits_reserved", "user_group",
        "estimated_time", "can_cancel", "error_display", "submit_started_at", "submitted_at",
        "callback_received_at", "images_stored_at", "next_poll_at", "last_polled_at",
        "poll_count", "poll_error_count", "lease_until", "credits_estimated", "events_link",
    )

    # ---------------------------------------------------------------- queryset

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """Tasks with their user and (one prefetch per page) their first result image."""
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
        """Prompt, exact Evolink id, and the user model's name and e-mail fields."""
        return ["prompt", "=evolink_id", *user_search_fields()]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        """The search of :func:`.filters.task_search` (index-friendly, no join, so no
        duplicates), plus the task searched for by its full id."""
        result = task_search(queryset, search_term)
        return or_task_id(result, queryset, search_term, "pk"), False

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> FieldsetSpec:
        """The sections of the change page; *Error* only when the task has one."""
        sets = list(self.fieldsets_base)
        if obj is not None and (obj.error_code or obj.error_message):
            sets.insert(1, self.fieldset_error)
        sets.append(self.fieldset_bookkeeping)
        return sets

    # ---------------------------------------------------------------- columns

    @admin.display(description=_("task"), ordering="id")
    def short_id(self, obj: ImageTask) -> str:
        """The first 8 characters of the task id."""
        return str(obj.pk)[:8]

    @admin.display(description=_("user"), ordering="user")
    def user_display(self, obj: ImageTask) -> str:
        """The user name of the task's user."""
        return user_label(obj.user) or "–"

    @admin.display(description=_("status"), ordering="status")
    def status_display(self, obj: ImageTask) -> SafeString:
        """The status as a coloured badge."""
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description=_("progress"), ordering="progress")
    def progress_display(self, obj: ImageTask) -> SafeString:
        """Evolink's progress as a bar."""
        return progress_bar(obj.progress, obj.status)

    @admin.display(description=_("status"), ordering="status")
    def status_progress(self, obj: ImageTask) -> SafeString:
        """The status badge with Evolink's progress bar under it (the changelist)."""
        return format_html('{}<span class="evolink-under">{}</span>',
                           status_badge(obj.status, obj.get_status_display()),
                           progress_bar(obj.progress, obj.status))

    @admin.display(description=_("prompt"))
    def prompt_excerpt(self, obj: ImageTask) -> SafeString:
        """The start of the prompt (a longer excerpt on hover) and the model under it."""
        prompt = Truncator(safe_text(obj.prompt))  # redacted once for both excerpts
        return format_html(
            '<span class="evolink-prompt" title="{}">{}</span>'
            '<span class="evolink-model evolink-muted evolink-small">{}</span>',
            prompt.chars(300),
            prompt.chars(60),
            obj.model,
        )

    @admin.display(description=_("input"))
    def input_thumbnail(self, obj: ImageTask) -> SafeString:
        """A thumbnail of the first input image."""
        return thumbnail(input_url(obj), title=gettext("input image"))

    @admin.display(description=_("result"))
    def result_thumbnail(self, obj: ImageTask) -> SafeString:
        """A thumbnail of the first result image (stored, else Evolink's link)."""
        images = getattr(obj, "first_images", None)
        if images is None:  # not fetched through get_queryset
            images = list(obj.images.order_by("index")[:1])
        return thumbnail(image_url(images[0] if images else None), title=gettext("result"))

    @admin.display(description=_("images"))
    def thumbnails(self, obj: ImageTask) -> SafeString:
        """The first input image and the first result, side by side (the changelist)."""
        return format_html('<span class="evolink-thumbs">{}{}</span>',
                           self.input_thumbnail(obj), self.result_thumbnail(obj))

    @admin.display(description=_("credits reserved"), ordering="credits_reserved")
    def credits_display(self, obj: ImageTask) -> str:
        """The credits Evolink reserved for the task."""
        return format_credits(obj.credits_reserved) or "–"

    # ---------------------------------------------------------------- change page

    @admin.display(description=_("prompt"))
    def prompt_display(self, obj: ImageTask) -> SafeString:
        """The whole prompt, secrets redacted."""
        return format_html('<div class="evolink-prompt-full">{}</div>', safe_text(obj.prompt))

    @admin.display(description=_("parameters"))
    def params_display(self, obj: ImageTask) -> SafeString:
        """The model's other parameters as sent to Evolink, one per line."""
        if not obj.params:
            return format_html('<span class="evolink-muted">{}</span>', gettext("none"))
        return format_html_join(
            "", '<div><code>{}</code> = <code>{}</code></div>',
            ((name, safe_text(json.dumps(value, ensure_ascii=False)))
             for name, value in sorted(obj.params.items())),
        )

    @admin.display(description=_("image URLs"))
    def image_urls_display(self, obj: ImageTask) -> SafeString:
        """Each input image URL as text: the client chose it, so no ``<img>`` and no link
        makes a staff browser fetch it (the stored copies below are shown as images)."""
        urls = [safe_text(u) for u in (obj.image_urls or []) if isinstance(u, str)]
        if not urls:
            return format_html("{}", "–")
        return format_html(
            '<div class="evolink-inputs">{}</div>',
            format_html_join(
                "", '<div class="evolink-input"><code title="{}">{}</code></div>',
                ((u, Truncator(u).chars(120)) for u in urls),
            ),
        )

    @admin.display(description=_("stored input copies"))
    def input_files_display(self, obj: ImageTask) -> SafeString:
        """Each stored input copy with its thumbnail."""
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
        """The error code and message, or a dash."""
        if not (obj.error_code or obj.error_message):
            return format_html("{}", "–")
        return format_html(
            '<div class="evolink-error"><strong>{}</strong><br>{}{}</div>',
            obj.error_code or gettext("error"),
            safe_text(obj.error_message),
            format_html("<br><em>{}</em>", fix) if (fix := task_errors.hint(obj.error_code))
            else "",
        )

    @admin.display(description=_("all events"))
    def events_link(self, obj: ImageTask) -> SafeString:
        """A link to the event list filtered on this task."""
        url = reverse("admin:django_evolink_taskevent_changelist")
        return format_html('<a href="{}?task__id__exact={}">{}</a>', url, obj.pk,
                           gettext("Open this task's events in the event list"))

    # ---------------------------------------------------------------- changelist

    def get_urls(self) -> list[URLPattern]:
        """The usage view and the change-page action buttons, then the admin's own URLs."""
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

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict | None = None) -> HttpResponse:
        """The list, with the balance, the credits of the filtered tasks and the usage link."""
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if isinstance(context, dict) and context.get("cl") is not None:
            cl = context["cl"]
            exact = getattr(cl.paginator, "count_is_exact", True)
            # Summed only over a list the paginator counted exactly (at most its
            # count_limit rows): beyond that the sum would read every matching row on
            # every page view; the usage view has the totals by day, user and model.
            if exact:
                total = cl.queryset.order_by().aggregate(total=Sum("credits_reserved"))["total"]
                context["evolink_filtered_credits"] = format_credits(total) or "0"
            else:
                context["evolink_filtered_credits"] = ""
            context["evolink_count_is_exact"] = exact
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
