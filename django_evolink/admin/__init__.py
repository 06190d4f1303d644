"""The Django admin of django-evolink: browse, search, audit and act on tasks.

The mirrored task is Evolink's truth, not a form: every page is read-only (no add,
no change, deleting for superusers only). What staff can do goes through the same
code paths as everything else (``services.refresh_task``, ``services.create_task``,
``transitions.apply_payload``, ``downloads.retry_missing_images``), as admin actions
that report per task and never fail the page when Evolink is down.

The changelists stay fast on large tables: a fixed number of queries per page
(``list_select_related``, a sliced prefetch of the first result image), no full-table
count (:class:`EstimatedCountPaginator`) and filters that do not scan the table for
their choices. See ``docs/admin.md``.

Modules, by what staff look at: :mod:`.tasks`, :mod:`.events`, :mod:`.images` (the
three admins), :mod:`.usage` (the usage view, with who is near a spending limit),
:mod:`.prices` (the price table), :mod:`.actions` (what staff can do), :mod:`.balance`,
:mod:`.filters`, :mod:`.display`, :mod:`.pagination` and :mod:`.base`.
Django's autodiscovery imports this package, which registers the admins.
"""

from __future__ import annotations

from django.contrib import admin

from ..core.models import GeneratedImage, ImageTask, ModelPrice, TaskEvent
from .balance import fetch_credit_balance
from .display import pretty_json, redact_data
from .events import TaskEventAdmin
from .images import GeneratedImageAdmin
from .pagination import EstimatedCountPaginator
from .prices import ModelPriceAdmin
from .tasks import ImageTaskAdmin

admin.site.register(ImageTask, ImageTaskAdmin)
admin.site.register(TaskEvent, TaskEventAdmin)
admin.site.register(GeneratedImage, GeneratedImageAdmin)
admin.site.register(ModelPrice, ModelPriceAdmin)

__all__ = [
    "EstimatedCountPaginator",
    "GeneratedImageAdmin",
    "ImageTaskAdmin",
    "ModelPriceAdmin",
    "TaskEventAdmin",
    "fetch_credit_balance",
    "pretty_json",
    "redact_data",
]
