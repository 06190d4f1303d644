"""The read-only bases of every admin of the mirror: nobody adds or edits a mirrored row."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

from .pagination import EstimatedCountPaginator


class NoAddNoChangeMixin:
    """Nobody adds or edits a mirrored row, whatever their permissions."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nobody adds a mirrored row."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Nobody edits a mirrored row."""
        return False


class ReadOnlyInlineMixin(NoAddNoChangeMixin):
    """An inline that shows rows only: no add, change or delete, no extra forms."""

    extra = 0
    max_num: int | None = 0  # InlineModelAdmin's type: None means no limit
    can_delete = False
    show_change_link = False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Rows are deleted with their task, not from the inline."""
        return False


class ReadOnlyMirrorAdmin(NoAddNoChangeMixin, admin.ModelAdmin):
    """Read-only: nobody adds or edits a mirror; superusers may delete."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    #: Rows counted exactly before the changelist count is capped/estimated.
    exact_count_limit = EstimatedCountPaginator.count_limit

    class Media:
        css = {"all": ("django_evolink/admin.css",)}

    def get_paginator(self, request: HttpRequest, queryset: QuerySet, per_page: int,
                      orphans: int = 0, allow_empty_first_page: bool = True) -> Paginator:
        """The paginator, counting exactly up to :attr:`exact_count_limit` rows."""
        return self.paginator(queryset, per_page, orphans, allow_empty_first_page,
                              count_limit=self.exact_count_limit)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Superusers only (who also have Django's delete permission)."""
        return bool(request.user.is_superuser) and super().has_delete_permission(request, obj)
