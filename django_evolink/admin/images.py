"""Result images: their own read-only admin, and the inline on a task's change page.

Whether Evolink's link to an image is still usable is the downloads' rule
(:func:`~django_evolink.background.downloads.can_download`), shown by
:func:`.display.link_state` and :func:`.display.link_expiry`.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from ..core.models import GeneratedImage
from .base import ReadOnlyInlineMixin, ReadOnlyMirrorAdmin
from .display import (
    image_size,
    image_url,
    link_expiry,
    link_state,
    local_time,
    muted,
    safe_text,
    thumbnail,
)
from .filters import StoredFilter


class GeneratedImageInline(ReadOnlyInlineMixin, admin.TabularInline):
    """The result images of a task, on its change page."""

    model = GeneratedImage
    verbose_name = _("result image")
    verbose_name_plural = _("result images")
    fields = ("index", "preview", "stored_file", "original_link", "size", "download_state")
    readonly_fields = fields
    ordering = ("index",)

    @admin.display(description=_("preview"))
    def preview(self, obj: GeneratedImage) -> SafeString:
        """A medium thumbnail of the stored copy, else of Evolink's usable link."""
        return thumbnail(image_url(obj), size="medium")

    @admin.display(description=_("stored file"))
    def stored_file(self, obj: GeneratedImage) -> SafeString:
        """A link to the stored file, its name when the storage has no URL."""
        if not obj.file:
            return muted(gettext("not stored yet"))
        try:
            url = obj.file.url
        except Exception:
            return format_html("<code>{}</code>", obj.file.name)
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, obj.file.name
        )

    @admin.display(description=_("Evolink link"))
    def original_link(self, obj: GeneratedImage) -> SafeString:
        """Evolink's link and until when downloads try it."""
        if not obj.source_url:
            return format_html("{}", "–")
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>'
            '<br><span class="evolink-muted">{}</span>',
            safe_text(obj.source_url),
            Truncator(safe_text(obj.source_url)).chars(60),
            link_expiry(obj),
        )

    @admin.display(description=_("size"))
    def size(self, obj: GeneratedImage) -> str:
        """Width × height once stored."""
        return image_size(obj)

    @admin.display(description=_("download"))
    def download_state(self, obj: GeneratedImage) -> SafeString:
        """When it was stored, else the attempts and the recorded error."""
        if obj.downloaded_at:
            return format_html(
                '<span class="evolink-ok">{}</span>',
                gettext("downloaded %(when)s") % {"when": local_time(obj.downloaded_at)},
            )
        parts = [gettext("attempts: %(n)d") % {"n": obj.download_attempts}]
        if obj.download_error:
            parts.append(safe_text(obj.download_error))
        return muted(" · ".join(parts))


class GeneratedImageAdmin(ReadOnlyMirrorAdmin):
    """Every result image: stored or not, its link's state, download attempts and errors."""

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
        """A thumbnail of the stored copy, else of Evolink's usable link."""
        return thumbnail(image_url(obj))

    @admin.display(description=_("task"), ordering="task")
    def task_link(self, obj: GeneratedImage) -> SafeString:
        """The image's task (short id), linked to its change page."""
        url = reverse("admin:django_evolink_imagetask_change", args=[obj.task_id])
        return format_html('<a href="{}">{}</a>', url, str(obj.task_id)[:8])

    @admin.display(description=_("size"))
    def size(self, obj: GeneratedImage) -> str:
        """Width × height once stored."""
        return image_size(obj)

    @admin.display(description=_("stored"), boolean=True)
    def stored(self, obj: GeneratedImage) -> bool:
        """Whether the image is in the site's storage."""
        return bool(obj.file)

    @admin.display(description=_("Evolink link"))
    def link_state(self, obj: GeneratedImage) -> str:
        """The state of Evolink's link: alive, expired or expiry unknown."""
        return link_state(obj)

    @admin.display(description=_("download error"))
    def error_excerpt(self, obj: GeneratedImage) -> str:
        """The recorded download error, shortened."""
        return Truncator(safe_text(obj.download_error)).chars(120) or "–"
