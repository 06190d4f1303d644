"""Permissions of the REST API.

The view-level classes come from ``EVOLINK['PERMISSION_CLASSES']`` (default: DRF's
``IsAuthenticated``). Object access is "the owner, or staff with Django's model
permissions" - the same rule as the admin: another person's task may be read with
``django_evolink.view_imagetask`` (or ``change_imagetask``, which implies viewing, as in
the admin) and refreshed with ``django_evolink.change_imagetask``. ``is_staff`` alone grants
nothing (it only opens the admin's door). The views filter their querysets with
:func:`visible_tasks`, so a task the caller may not read answers 404 and its existence is
not revealed; :class:`IsOwnerOrModelPermission` states the same rule for sites that build
their own views.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy
from rest_framework.permissions import SAFE_METHODS, BasePermission

from ..core.models import ImageTask

#: Reads another person's task (detail, events), as in the admin.
VIEW_PERMISSION = "django_evolink.view_imagetask"
#: Acts on another person's task (refresh), as in the admin.
CHANGE_PERMISSION = "django_evolink.change_imagetask"


def _authenticated(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False))


def may_view_all(user: Any) -> bool:
    """True when ``user`` may read every task (the admin's view rule)."""
    return _authenticated(user) and (
        user.has_perm(VIEW_PERMISSION) or user.has_perm(CHANGE_PERMISSION)
    )


def may_change_all(user: Any) -> bool:
    """True when ``user`` may act on every task (the admin's change rule)."""
    return _authenticated(user) and user.has_perm(CHANGE_PERMISSION)


def visible_tasks(user: Any) -> QuerySet[ImageTask]:
    """Tasks ``user`` may read by id: their own; with the view (or change) permission of
    the model, every task."""
    qs = ImageTask.objects.all()
    if not _authenticated(user):
        return qs.none()
    if may_view_all(user):
        return qs
    return qs.for_user(user)


class IsOwnerOrModelPermission(BasePermission):
    """Object permission: the task's owner; for anyone else, the model permission of the
    method (``view_imagetask`` or ``change_imagetask`` to read, ``change_imagetask`` to
    act)."""

    message = gettext_lazy(
        "Only the task's owner, or staff with the change permission of image tasks, may "
        "do this."
    )

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        user = request.user
        if not _authenticated(user):
            return False
        if getattr(obj, "user_id", None) == user.pk:
            return True
        if request.method in SAFE_METHODS:
            return may_view_all(user)
        return may_change_all(user)


#: The name of 0.1 (when ``is_staff`` alone granted access); the rule is now the model
#: permissions'.
IsOwnerOrStaff = IsOwnerOrModelPermission
