"""Permissions of the REST API.

The view-level classes come from ``EVOLINK['PERMISSION_CLASSES']`` (default: DRF's
``IsAuthenticated``). Object access is always "owner or staff": the views filter
their querysets with :func:`visible_tasks`, so another user's task answers 404 and its
existence is not revealed; :class:`IsOwnerOrStaff` states the same rule for sites that
build their own views.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.permissions import BasePermission

from ..core.models import ImageTask


def is_staff(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False))


def visible_tasks(user: Any) -> QuerySet[ImageTask]:
    """Tasks ``user`` may read by id: their own; staff: every task."""
    qs = ImageTask.objects.all()
    if is_staff(user):
        return qs
    if not getattr(user, "is_authenticated", False):
        return qs.none()
    return qs.for_user(user)


class IsOwnerOrStaff(BasePermission):
    """Object permission: the task's owner, or a staff member."""

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        user = request.user
        if is_staff(user):
            return True
        owner_id = getattr(obj, "user_id", None)
        return bool(getattr(user, "is_authenticated", False) and owner_id == user.pk)
