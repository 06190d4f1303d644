"""The usage view of the admin: credits and task counts per day, per user and per model.

Reached from the image task changelist (``admin:django_evolink_imagetask_usage``);
staff with the *view* permission of image tasks only. The chart is plain SVG built
on the server; ``?export=day``, ``?export=user`` and ``?export=model`` download the
tables as CSV. Per model, the rows are split by Evolink's billing rule (``per_call``,
``per_token``, ``per_second``, ...): credits of different rules are shown apart.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypedDict, cast

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .. import conf
from ..core import limits
from ..core.models import ImageTask, Status
from .exports import csv_response

#: Longest period the usage view accepts, in days.
MAX_DAYS = 366
#: Users listed on the page (the CSV export has them all).
MAX_USERS_SHOWN = 50

CHART_WIDTH = 900
CHART_HEIGHT = 220
CHART_PAD_LEFT = 56
CHART_PAD_BOTTOM = 28
CHART_PAD_TOP = 12


class UsageForm(forms.Form):
    """The period of the usage view (both days included, in the site's time zone)."""

    start = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict[str, Any]:
        """Default to the last 30 days; refuse a reversed or too long period."""
        super().clean()  # forms.Form.clean returns self.cleaned_data (typed "| None")
        cleaned = self.cleaned_data
        today = timezone.localdate()
        end = cleaned.get("end") or today
        start = cleaned.get("start") or (end - dt.timedelta(days=29))
        if start > end:
            raise forms.ValidationError(
                _("The start date must be on or before the end date.")
            )
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(
                _("Choose a period of at most %(days)d days.") % {"days": MAX_DAYS}
            )
        cleaned["start"], cleaned["end"] = start, end
        return cleaned


class _Aggregates(TypedDict):
    """The values of :func:`_aggregates` in a grouped row."""

    tasks: int
    completed: int
    failed: int
    credits: Decimal | None


class _DayRow(_Aggregates):
    day: dt.date


class _UserRow(_Aggregates):
    user: Any  # the user's pk (None for tasks without a user)


class _ModelRow(_Aggregates):
    model: str
    billing_rule: str


def _aggregates() -> dict[str, Any]:
    return {
        "tasks": Count("pk"),
        "completed": Count("pk", filter=Q(status=Status.COMPLETED)),
        "failed": Count("pk", filter=Q(status__in=[Status.FAILED, Status.CANCELLED])),
        "credits": Sum("credits_reserved"),
    }


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    tz = timezone.get_current_timezone()
    lo = timezone.make_aware(dt.datetime.combine(start, dt.time.min), tz)
    hi = timezone.make_aware(dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min), tz)
    return lo, hi


def usage_data(start: dt.date, end: dt.date) -> dict[str, Any]:
    """Totals, per-day rows (every day of the period), per-user rows and per-model rows
    (model and billing rule) of a period.

    Credits are the credits Evolink reserved for the tasks created in the period
    (failed tasks included: Evolink may refund them).
    """
    lo, hi = _bounds(start, end)
    base = ImageTask.objects.order_by().filter(created_at__gte=lo, created_at__lt=hi)
    totals = base.aggregate(**_aggregates())
    local_day = TruncDate("created_at", tzinfo=timezone.get_current_timezone())
    # cast (twice): the django-stubs plugin types a values() row from its field names only;
    # it cannot see the aggregates annotate(**_aggregates()) adds (nor order by them).
    day_rows = cast(
        "QuerySet[ImageTask, _DayRow]",
        base.annotate(day=local_day).values("day").annotate(**_aggregates()),
    )
    by_day = {row["day"]: row for row in day_rows.order_by("day")}
    days = []
    day = start
    while day <= end:
        day_row: Mapping[str, Any] = by_day.get(day, {})
        days.append(
            {
                "day": day,
                "tasks": day_row.get("tasks", 0),
                "completed": day_row.get("completed", 0),
                "failed": day_row.get("failed", 0),
                "credits": day_row.get("credits") or Decimal(0),
            }
        )
        day += dt.timedelta(days=1)
    user_groups = cast(
        "QuerySet[ImageTask, _UserRow]", base.values("user").annotate(**_aggregates())
    )
    user_rows = list(
        user_groups.order_by(F("credits").desc(nulls_last=True), "-tasks", "user")
    )
    user_model = get_user_model()
    users = user_model._default_manager.in_bulk(
        [r["user"] for r in user_rows if r["user"] is not None]
    )
    email_field = getattr(user_model, "EMAIL_FIELD", "email")
    per_user = []
    for row in user_rows:
        user = users.get(row["user"])
        per_user.append(
            {
                "user_id": row["user"],
                "username": user.get_username() if user is not None else "",
                "email": (getattr(user, email_field, "") or "") if user is not None else "",
                "tasks": row["tasks"],
                "completed": row["completed"],
                "failed": row["failed"],
                "credits": row["credits"] or Decimal(0),
            }
        )
    model_groups = cast(
        "QuerySet[ImageTask, _ModelRow]",
        base.values("model", "billing_rule").annotate(**_aggregates()),
    )
    per_model = [
        {"model": row["model"], "billing_rule": row["billing_rule"] or "",
         "tasks": row["tasks"], "completed": row["completed"], "failed": row["failed"],
         "credits": row["credits"] or Decimal(0)}
        for row in model_groups.order_by(F("credits").desc(nulls_last=True), "-tasks",
                                         "model", "billing_rule")
    ]
    return {
        "models": per_model,
        "totals": {
            "tasks": totals["tasks"] or 0,
            "completed": totals["completed"] or 0,
            "failed": totals["failed"] or 0,
            "credits": totals["credits"] or Decimal(0),
        },
        "days": days,
        "users": per_user,
    }


def _fmt(value: Decimal) -> str:
    return format(Decimal(value).normalize(), "f") if value else "0"


def _nice_max(value: float) -> float:
    """A round number >= value for the chart's scale."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def bar_chart(days: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Geometry of an SVG bar chart of ``days[i][key]`` (computed here, drawn by the template)."""
    values = [float(d[key] or 0) for d in days]
    top = _nice_max(max(values, default=0))
    if key == "tasks":  # counts: whole numbers on every tick
        top = float(max(4, -(-int(top) // 4) * 4))
    plot_w = CHART_WIDTH - CHART_PAD_LEFT - 8
    plot_h = CHART_HEIGHT - CHART_PAD_BOTTOM - CHART_PAD_TOP
    slot = plot_w / max(1, len(days))
    gap = min(4.0, slot * 0.2)
    bars = []
    label_every = max(1, round(len(days) / 10))
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        height = plot_h * value / top if top else 0
        x = CHART_PAD_LEFT + i * slot + gap / 2
        bars.append(
            {
                "x": round(x, 2),
                "y": round(CHART_PAD_TOP + plot_h - height, 2),
                "width": round(max(1.0, slot - gap), 2),
                "height": round(height, 2),
                "label_x": round(x + (slot - gap) / 2, 2),
                "show_label": i % label_every == 0,
                "day": day["day"],
                "value": _fmt(Decimal(str(day[key]))) if key == "credits" else day[key],
                "tasks": day["tasks"],
                "credits": _fmt(day["credits"]),
            }
        )
    ticks = []
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        value = top * fraction
        ticks.append(
            {
                "y": round(CHART_PAD_TOP + plot_h - plot_h * fraction, 2),
                "label": _fmt(Decimal(str(round(value, 4)))),
            }
        )
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "bars": bars,
        "ticks": ticks,
        "axis_x0": CHART_PAD_LEFT,
        "axis_x1": CHART_WIDTH - 8,
        "axis_y": CHART_PAD_TOP + plot_h,
        "label_y": CHART_HEIGHT - 8,
    }


def limits_data() -> dict[str, Any] | None:
    """The spending limits of the last 24 hours (rolling), or None when none is set:
    the site's credits against ``CREDITS_PER_DAY`` and the users nearest a per-user limit
    (those at :data:`~django_evolink.core.limits.NEAR_SHARE` or more of one)."""
    site = limits.configured_limits()
    if not site.any and conf.get("LIMITS_POLICY") is None:
        return None
    used = limits.site_credits_used()
    near = []
    for standing in limits.standings():
        if not standing.near:
            continue
        bounds = standing.limits
        near.append({
            "user": standing.user,
            "active": standing.active,
            "active_limit": bounds.ACTIVE_TASKS_PER_USER,
            "credits_text": _fmt(standing.credits),
            "credits_limit": (None if bounds.CREDITS_PER_USER_PER_DAY is None
                              else _fmt(bounds.CREDITS_PER_USER_PER_DAY)),
            "share": round(float(max(standing.shares.values())) * 100),
        })
    return {
        "site_used": _fmt(used),
        "site_limit": None if site.CREDITS_PER_DAY is None else _fmt(site.CREDITS_PER_DAY),
        "site_share": (None if not site.CREDITS_PER_DAY
                       else min(100, round(float(used / site.CREDITS_PER_DAY) * 100))),
        "near": near[:MAX_USERS_SHOWN],
        "near_share": round(float(limits.NEAR_SHARE) * 100),
    }


def usage_view(request: HttpRequest, model_admin: admin.ModelAdmin) -> HttpResponse:
    """Credits and task counts per day and per user; ``?export=day|user`` for CSV."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    form = UsageForm(request.GET or None)
    if request.GET and not form.is_valid():
        data = None
        start = end = None
    else:
        if not request.GET:  # the default period, shown in the form
            end = timezone.localdate()
            form = UsageForm({"start": (end - dt.timedelta(days=29)).isoformat(),
                              "end": end.isoformat()})
            form.is_valid()
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
        data = usage_data(start, end)

    export = request.GET.get("export")
    if export and data is not None:
        if export == "day":
            return csv_response(
                f"evolink-usage-per-day-{start}-{end}.csv",
                ["day", "tasks", "completed", "failed", "credits_reserved"],
                [
                    [d["day"].isoformat(), d["tasks"], d["completed"], d["failed"],
                     _fmt(d["credits"])]
                    for d in data["days"]
                ],
            )
        if export == "user":
            return csv_response(
                f"evolink-usage-per-user-{start}-{end}.csv",
                ["user_id", "username", "email", "tasks", "completed", "failed",
                 "credits_reserved"],
                [
                    [u["user_id"] if u["user_id"] is not None else "", u["username"], u["email"],
                     u["tasks"], u["completed"], u["failed"], _fmt(u["credits"])]
                    for u in data["users"]
                ],
            )
        if export == "model":
            return csv_response(
                f"evolink-usage-per-model-{start}-{end}.csv",
                ["model", "billing_rule", "tasks", "completed", "failed", "credits_reserved"],
                [
                    [m["model"], m["billing_rule"], m["tasks"], m["completed"], m["failed"],
                     _fmt(m["credits"])]
                    for m in data["models"]
                ],
            )

    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": gettext("Evolink usage"),
        "opts": model_admin.opts,
        "app_label": model_admin.opts.app_label,
        "form": form,
        "start": start,
        "end": end,
        "limits": limits_data(),
        "export_error": (
            gettext("Unknown export %(export)r: use “day”, “user” or “model”.")
            % {"export": export}
            if export and data is not None else ""
        ),
    }
    if data is not None:
        top_credits = max((u["credits"] for u in data["users"]), default=Decimal(0))
        users = []
        for u in data["users"][:MAX_USERS_SHOWN]:
            share = float(u["credits"] / top_credits * 100) if top_credits else 0.0
            users.append({**u, "credits_text": _fmt(u["credits"]), "share": round(share, 1)})
        query = request.GET.copy()
        query.pop("export", None)
        context.update(
            {
                "totals": {**data["totals"], "credits_text": _fmt(data["totals"]["credits"])},
                "days": [{**d, "credits_text": _fmt(d["credits"])} for d in data["days"]],
                "users": users,
                "users_hidden": max(0, len(data["users"]) - MAX_USERS_SHOWN),
                "models": [{**m, "credits_text": _fmt(m["credits"])} for m in data["models"]],
                "credits_chart": bar_chart(data["days"], "credits"),
                "tasks_chart": bar_chart(data["days"], "tasks"),
                "query": query.urlencode(),
            }
        )
    return TemplateResponse(request, "admin/django_evolink/usage.html", context)
