"""Task events, the audit trail of every delivery: their admin and the inline on a task.

Payloads and headers are shown as indented JSON with secrets removed
(:func:`.display.pretty_json`).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from ..core.models import TaskEvent
from .actions import EventActions
from .base import ReadOnlyInlineMixin, ReadOnlyMirrorAdmin
from .display import pretty_json, safe_text, status_badge
from .filters import or_task_id


class TaskEventColumns:
    """Read-only columns of an event, shared by its inline and its own admin."""

    @admin.display(description=_("status before → after"))
    def transition(self, obj: TaskEvent) -> SafeString:
        """The status badges before and after the event."""
        return format_html("{} → {}", status_badge(obj.status_before),
                           status_badge(obj.status_after))

    @admin.display(description=_("note"))
    def note_text(self, obj: TaskEvent) -> str:
        """The note, secrets redacted."""
        return safe_text(obj.note) or "–"

    @admin.display(description=_("payload"))
    def payload_json(self, obj: TaskEvent) -> SafeString:
        """The payload as redacted, indented JSON."""
        return pretty_json(obj.payload)

    @admin.display(description=_("headers"))
    def headers_json(self, obj: TaskEvent) -> SafeString:
        """The request headers as redacted, indented JSON."""
        return pretty_json(obj.headers)


class TaskEventInline(ReadOnlyInlineMixin, TaskEventColumns, admin.StackedInline):
    """Every event of a task, newest first, on its change page."""

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


class TaskEventAdmin(TaskEventColumns, EventActions, ReadOnlyMirrorAdmin):
    """Every recorded delivery (callback, poll, admin action), searchable by task."""

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

    def get_search_results(self, request: HttpRequest, queryset: QuerySet,
                           search_term: str) -> tuple[QuerySet, bool]:
        """The usual search, plus the events of a task searched for by its full id."""
        result, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return or_task_id(result, queryset, search_term, "task_id"), may_have_duplicates

    @admin.display(description=_("task"), ordering="task")
    def task_link(self, obj: TaskEvent) -> SafeString:
        """The event's task (short id and Evolink id), linked to its change page."""
        url = reverse("admin:django_evolink_imagetask_change", args=[obj.task_id])
        return format_html('<a href="{}">{}</a> {}', url, str(obj.task_id)[:8],
                           obj.task.evolink_id or "")

    @admin.display(description=_("note"))
    def note_excerpt(self, obj: TaskEvent) -> str:
        """The note, redacted and shortened."""
        return Truncator(safe_text(obj.note)).chars(80)
