"""Narrowing the changelists: list filters that never scan a table for their choices,
and the search helpers (user fields, a full task id)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext_lazy as _

from ..core.models import ImageTask
from ..evolink import catalogue, task_errors

if TYPE_CHECKING:
    from django.db.models.fields.related import RelatedField
    from django_stubs_ext import StrOrPromise


class ModelNameFilter(admin.SimpleListFilter):
    """Filter by Evolink model; choices come from the catalogue (no table scan)."""

    title = _("model")
    parameter_name = "model"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        """Every catalogue model, plus the one in the URL."""
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
    """Failed tasks by error code: the local decisions that failed them, then Evolink's
    own codes of a failed task (evolink-api.md §7); fixed choices (no table scan).

    ``outcome_unknown`` is the one an operator must act on: the create was sent, its
    answer was lost, and Evolink may have made and billed the task (see docs/reliability.md).
    """

    title = _("error")
    parameter_name = "error_code"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        local = [
            ("outcome_unknown", _("Outcome unknown: check the Evolink dashboard")),
            ("timeout", _("Timed out")),
            ("not_found_error", _("Unknown to Evolink")),
        ]
        evolink = [(code, code) for code in sorted(task_errors.CODES)]
        selected = self.value()
        known = {code for code, _label in local + evolink}
        extra = [(selected, selected)] if selected and selected not in known else []
        return local + evolink + extra

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

    def field_choices(self, field: RelatedField[Any, Any], request: HttpRequest,
                      model_admin: admin.ModelAdmin) -> list[tuple[str, StrOrPromise]]:
        """Users who have tasks (at most ``max_choices``), in the admin's ordering."""
        # Users probed one by one for a task (an index lookup each), until max_choices
        # are found: a DISTINCT over the tasks' user column would read every task.
        users = field.related_model._default_manager.order_by()
        user_ids = users.filter(
            Exists(ImageTask.objects.order_by().filter(user=OuterRef("pk")))
        ).values("pk")[: self.max_choices]
        ordering = self.field_admin_ordering(field, request, model_admin)
        # cast: on a relation, get_choices(include_blank=False) answers a plain list of
        # (pk, label) pairs (typed as the overridden method's stub types them); the stubs
        # of get_choices cover every shape of choices (blank, grouped).
        return cast(
            "list[tuple[str, StrOrPromise]]",
            field.get_choices(
                include_blank=False, limit_choices_to={"pk__in": user_ids}, ordering=ordering
            ),
        )


class StoredFilter(admin.SimpleListFilter):
    """Images stored in the site's storage, or not yet."""

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


# --------------------------------------------------------------------------- search


def user_search_fields() -> list[str]:
    """``user__<USERNAME_FIELD>`` and ``user__email`` when the user model has them."""
    user_model = get_user_model()
    names = {f.name for f in user_model._meta.get_fields()}
    fields = [f"user__{user_model.USERNAME_FIELD}"]
    email = getattr(user_model, "EMAIL_FIELD", "email")
    if email in names and email != user_model.USERNAME_FIELD:
        fields.append(f"user__{email}")
    return fields


def or_task_id(result: QuerySet, queryset: QuerySet, search_term: str | None,
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


#: Up to this many users matching a search word are listed in the task query (so the
#: user index serves it); more are matched by a subquery.
SEARCH_USERS_INLINE = 1000


def task_search(queryset: QuerySet, search_term: str | None) -> QuerySet:
    """The task changelist's search, written so that PostgreSQL can use indexes.

    Same meaning as Django's ``search_fields = ["prompt", "=evolink_id", user fields]``
    (every word, or quoted phrase, must match one of them; prompt and user fields by
    case-insensitive substring), but with no join: the user fields become
    ``user_id IN (<ids of the matching users>)``, looked up first in the (small) user
    table. On PostgreSQL each word is then one ``BitmapOr`` of
    the prompt's trigram index (``evolink_task_prompt_trgm``, migration 0004:
    ``UPPER(prompt) gin_trgm_ops``, which serves ``icontains``), the unique Evolink id and
    the user index, instead of a scan of every prompt.
    """
    user_model = get_user_model()
    user_fields = [f.removeprefix("user__") for f in user_search_fields()]
    for bit in smart_split(search_term or ""):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
            bit = unescape_string_literal(bit)
        if not bit:
            continue
        users = Q()
        for name in user_fields:
            users |= Q(**{f"{name}__icontains": bit})
        matching = user_model._default_manager.filter(users).values_list("pk", flat=True)
        user_ids: Any = list(matching[:SEARCH_USERS_INLINE + 1])
        if len(user_ids) > SEARCH_USERS_INLINE:  # too many to list: a subquery
            user_ids = matching
        queryset = queryset.filter(
            Q(prompt__icontains=bit) | Q(evolink_id=bit) | Q(user_id__in=user_ids)
        )
    return queryset
