"""The price table in the admin: what one image of a model cost last time.

Learnt from Evolink's answers (``usage.credits_reserved``) and used to estimate a
create's cost against the credit limits before it is sent (docs/limits.md). Staff with
the model permissions may correct a price, add one for a model not used yet (so its first
creates are not estimated at ``DEFAULT_IMAGE_CREDITS``) or delete one (it is learnt again).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..core.models import ModelPrice
from ..core.pricing import price_params


class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ("model", "params_text", "credits_per_image", "seen_at", "updated_at")
    list_editable = ("credits_per_image",)
    list_filter = ("model",)
    search_fields = ("model",)
    readonly_fields = ("seen_at", "updated_at")
    fields = ("model", "params", "credits_per_image", "seen_at", "updated_at")
    show_full_result_count = False

    @admin.display(description=_("parameters"))
    def params_text(self, obj: ModelPrice) -> str:
        return ", ".join(f"{k}={v}" for k, v in (obj.params or {}).items()) or "-"

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        # keep only the parameters that set a price, as learnt rows do
        obj.params = price_params(obj.params)
        super().save_model(request, obj, form, change)
