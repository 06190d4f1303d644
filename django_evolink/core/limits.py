"""Spending limits: checked, and a create's share reserved, before anything is sent.

``EVOLINK['LIMITS']`` (or the callable named by ``EVOLINK['LIMITS_POLICY']``) sets three
limits, each ``None`` for none:

- ``ACTIVE_TASKS_PER_USER``: unfinished tasks (``queued``, ``pending``, ``processing``)
  one user may have at once;
- ``CREDITS_PER_USER_PER_DAY``: credits one user's tasks may reserve in the last 24 hours
  (a rolling window, not a calendar day);
- ``CREDITS_PER_DAY``: the same for every task of the site.

A task counts with Evolink's ``credits_reserved`` once known, else with the estimate
made before it was sent (``credits_estimated``, from the price table
:class:`~django_evolink.core.models.ModelPrice`); a failed or cancelled task counts for
nothing (its reservation is released), except one whose create answer was lost
(``outcome_unknown``: Evolink may have billed it).

Race safety: :func:`reserve` runs in the transaction that inserts the task. Its first
statement writes the scope's :class:`~django_evolink.core.models.LimitLock` row (an
upsert): on PostgreSQL that row stays locked until the transaction ends, so a
second create of the same user (or, with a site cap, of anyone) waits, then counts the
first one's task. On SQLite the write takes the database's write lock, which serialises
whole transactions. The second statement reads everything the check needs (unfinished
tasks, the two sums, the price) at once: the check adds two statements to a create.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import (
    Case,
    Count,
    DecimalField,
    F,
    Func,
    IntegerField,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .. import conf, signals
from ..exceptions import EvolinkConfigurationError, EvolinkLimitExceededError
from .models import UNFINISHED_STATUSES, ImageTask, LimitLock, ModelPrice, Status
from .pricing import per_image, price_key, price_params

#: The rolling window of the credit limits.
WINDOW = timedelta(hours=24)
#: The names of the limits, as keys of ``EVOLINK['LIMITS']``.
LIMIT_NAMES = ("ACTIVE_TASKS_PER_USER", "CREDITS_PER_USER_PER_DAY", "CREDITS_PER_DAY")
#: Share of a limit from which the admin lists a user as near it.
NEAR_SHARE = Decimal("0.8")

_CREDITS = DecimalField(max_digits=20, decimal_places=4)
#: Tasks whose credits count: not failed or cancelled, unless the answer was lost.
COUNTED = ~Q(status__in=[Status.FAILED, Status.CANCELLED]) | Q(error_code="outcome_unknown")
#: What one task counts for: Evolink's figure, else the estimate.
AMOUNT = Coalesce(F("credits_reserved"), F("credits_estimated"), Value(Decimal(0)),
                  output_field=_CREDITS)


def _value_error(name: str, value: Any) -> str | None:
    """Why ``value`` is not allowed for the limit ``name`` (None when it is)."""
    if value is None:
        return None
    if name == "ACTIVE_TASKS_PER_USER":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return _("%(name)s must be None or a whole number of tasks, 0 or more (got "
                     "%(value)r).") % {"name": name, "value": value}
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float, Decimal))
            or not Decimal(str(value)).is_finite() or value < 0):
        return _("%(name)s must be None or a number of credits, 0 or more (got "
                 "%(value)r).") % {"name": name, "value": value}
    return None


def limit_errors(value: Any) -> list[str]:
    """What is wrong with a limits mapping (``EVOLINK['LIMITS']`` or a policy's answer);
    empty when it is allowed."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [_("The limits must be a dict with the keys %(keys)s (got %(type)s).")
                % {"keys": ", ".join(LIMIT_NAMES), "type": type(value).__name__}]
    errors = [
        _("Unknown limit %(name)r; the limits are %(keys)s.")
        % {"name": name, "keys": ", ".join(LIMIT_NAMES)}
        for name in value if name not in LIMIT_NAMES
    ]
    errors += [e for name in LIMIT_NAMES if (e := _value_error(name, value.get(name)))]
    return errors


@dataclass(frozen=True)
class Limits:
    """The limits that apply to one create (``None``: no limit)."""

    ACTIVE_TASKS_PER_USER: int | None = None
    CREDITS_PER_USER_PER_DAY: Decimal | None = None
    CREDITS_PER_DAY: Decimal | None = None

    @classmethod
    def from_mapping(cls, value: Mapping[str, Any] | None, *, origin: str) -> Limits:
        """Limits from a mapping; a bad one raises an error naming ``origin``."""
        errors = limit_errors(value)
        if errors:
            raise EvolinkConfigurationError(f"{origin}: " + " ".join(errors))
        value = value or {}
        credits = {name: None if value.get(name) is None else Decimal(str(value[name]))
                   for name in ("CREDITS_PER_USER_PER_DAY", "CREDITS_PER_DAY")}
        return cls(ACTIVE_TASKS_PER_USER=value.get("ACTIVE_TASKS_PER_USER"), **credits)

    def as_dict(self) -> dict[str, Any]:
        """The limits as ``EVOLINK['LIMITS']`` writes them."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def for_user(self, user: Any) -> Limits:
        """The limits that bind a create by ``user`` (none per user without a user)."""
        if user is not None:
            return self
        return Limits(CREDITS_PER_DAY=self.CREDITS_PER_DAY)

    @property
    def any(self) -> bool:
        return any(v is not None for v in self.as_dict().values())

    @property
    def credits(self) -> bool:
        """True when a credit limit is set (the create's cost must be estimated)."""
        return self.CREDITS_PER_USER_PER_DAY is not None or self.CREDITS_PER_DAY is not None


def configured_limits() -> Limits:
    """``EVOLINK['LIMITS']``."""
    return Limits.from_mapping(conf.get("LIMITS"), origin="EVOLINK['LIMITS']")


def _policy() -> Callable[[Any, Any], Any] | None:
    policy = conf.get("LIMITS_POLICY")
    if policy is None or callable(policy):
        return policy
    try:
        found: Callable[[Any, Any], Any] = import_string(policy)
    except ImportError as exc:
        raise EvolinkConfigurationError(
            f"EVOLINK['LIMITS_POLICY'] = {policy!r} cannot be imported ({exc}); name a "
            "callable(user, request) by its dotted path, e.g. 'mysite.limits.for_user'."
        ) from None
    return found


def limits_for(user: Any, request: Any = None) -> Limits:
    """The limits of a create by ``user`` (``None``: no user) made through ``request``
    (``None`` outside a web request: the Python API, commands, workers).

    ``EVOLINK['LIMITS']``, with what ``EVOLINK['LIMITS_POLICY']`` answers for this user
    laid over it: the keys it returns replace the settings' (``None``: no limit), the keys
    it leaves out keep them, and ``None`` as the whole answer keeps them all.
    """
    base = configured_limits()
    policy = _policy()
    if policy is not None:
        answer = policy(user, request)
        if answer is not None:
            if not isinstance(answer, Mapping):
                raise EvolinkConfigurationError(
                    f"EVOLINK['LIMITS_POLICY'] returned {type(answer).__name__}; it must "
                    f"return None or a dict with some of the keys {', '.join(LIMIT_NAMES)}."
                )
            base = Limits.from_mapping({**base.as_dict(), **answer},
                                       origin="EVOLINK['LIMITS_POLICY'] returned")
    return base.for_user(user)


@dataclass(frozen=True)
class Refusal:
    """Why a create was refused: the limit, its value, what is used and what was asked."""

    limit: str
    allowed: Decimal
    used: Decimal
    requested: Decimal
    user: Any

    @property
    def remaining(self) -> Decimal:
        return max(Decimal(0), self.allowed - self.used)


def _lock_keys(user: Any, limits: Limits) -> list[str]:
    """The scopes to lock, always in the same order (site first) so that two creates
    never wait on each other crosswise."""
    keys = ["site"] if limits.CREDITS_PER_DAY is not None else []
    if user is not None and (limits.ACTIVE_TASKS_PER_USER is not None
                             or limits.CREDITS_PER_USER_PER_DAY is not None):
        keys.append(f"user:{user.pk}")
    return keys


def _scalar(queryset: QuerySet, function: str, expression: Any, output: Any) -> Subquery:
    """``(SELECT <function>(<expression>) FROM ... WHERE ...)`` as a scalar subquery."""
    value = Func(expression, function=function, output_field=output)
    return Subquery(queryset.order_by().annotate(_value=value).values("_value")[:1],
                    output_field=output)


def _price(model: str, key: str) -> Subquery:
    """The price of one image: the row of these parameters, else the dearest seen for
    the model."""
    rows = (ModelPrice.objects.filter(model=model)
            .annotate(_exact=Case(When(params_key=key, then=Value(1)), default=Value(0),
                                  output_field=IntegerField()))
            .order_by("-_exact", "-credits_per_image"))
    return Subquery(rows.values("credits_per_image")[:1], output_field=_CREDITS)


def default_image_credits() -> Decimal:
    """``EVOLINK['DEFAULT_IMAGE_CREDITS']`` as a Decimal."""
    return Decimal(str(conf.get("DEFAULT_IMAGE_CREDITS")))


def reserve(*, user: Any, model: str, n: int, params: dict[str, Any] | None,
            limits: Limits, now: datetime | None = None) -> tuple[Decimal | None, Refusal | None]:
    """Check a create against ``limits``; call it inside the transaction that then inserts
    the task (its lock is held until that transaction ends).

    Returns ``(estimate, None)`` when the create may go ahead (``estimate``: its credits,
    ``None`` when no credit limit applies), or ``(estimate, refusal)``. Two statements:
    the lock row's upsert and one read.
    """
    keys = _lock_keys(user, limits)
    if not keys:
        return None, None
    now = now or timezone.now()
    LimitLock.objects.bulk_create(
        [LimitLock(key=key, touched_at=now) for key in keys],
        update_conflicts=True, unique_fields=["key"], update_fields=["touched_at"],
    )
    since = now - WINDOW
    tasks = ImageTask.objects.all()
    counted = tasks.filter(COUNTED, created_at__gt=since)
    read: dict[str, Any] = {}
    if user is not None and limits.ACTIVE_TASKS_PER_USER is not None:
        read["active"] = _scalar(tasks.filter(user=user).unfinished(), "COUNT", F("pk"),
                                 IntegerField())
    if user is not None and limits.CREDITS_PER_USER_PER_DAY is not None:
        read["user_credits"] = _scalar(counted.filter(user=user), "SUM", AMOUNT, _CREDITS)
    if limits.CREDITS_PER_DAY is not None:
        read["site_credits"] = _scalar(counted, "SUM", AMOUNT, _CREDITS)
    if limits.credits:
        read["price"] = _price(model, price_key(params))
    row = LimitLock.objects.filter(key=keys[0]).annotate(**read).values(*read).get()
    estimate = None
    if limits.credits:
        price = row["price"] if row["price"] is not None else default_image_credits()
        estimate = Decimal(price) * max(1, n)

    def over(limit: str, used: Any, requested: Decimal) -> Refusal | None:
        allowed = getattr(limits, limit)
        used = Decimal(used or 0)
        if allowed is None or used + requested <= allowed:
            return None
        return Refusal(limit, Decimal(allowed), used, requested, user)

    refusal = (
        ("active" in read and over("ACTIVE_TASKS_PER_USER", row["active"], Decimal(1)))
        or ("user_credits" in read and over("CREDITS_PER_USER_PER_DAY", row["user_credits"],
                                            estimate or Decimal(0)))
        or ("site_credits" in read and over("CREDITS_PER_DAY", row["site_credits"],
                                            estimate or Decimal(0)))
        or None
    )
    return estimate, refusal


def seconds_until_free(refusal: Refusal, now: datetime | None = None) -> float | None:
    """Seconds until enough of a credit limit frees up by time for the refused create;
    ``None`` for the unfinished-tasks limit (tasks free it by finishing) and for a create
    that costs more than the whole limit."""
    if refusal.limit == "ACTIVE_TASKS_PER_USER" or refusal.requested > refusal.allowed:
        return None
    now = now or timezone.now()
    need = refusal.used + refusal.requested - refusal.allowed
    rows = ImageTask.objects.filter(COUNTED, created_at__gt=now - WINDOW)
    if refusal.limit == "CREDITS_PER_USER_PER_DAY":
        rows = rows.filter(user=refusal.user)
    freed = Decimal(0)
    for created_at, amount in (rows.order_by("created_at")
                               .values_list("created_at", AMOUNT).iterator()):
        freed += Decimal(amount or 0)
        if freed >= need:
            return max(1.0, math.ceil((created_at + WINDOW - now).total_seconds()))
    return None  # pragma: no cover - the sum read under the lock covers ``need``


def _amount(value: Decimal) -> str:
    """``12.5000`` -> ``"12.5"``; ``3`` -> ``"3"``."""
    text = format(value.normalize(), "f")
    return text


def refusal_message(refusal: Refusal, retry_after: float | None) -> str:
    """The sentence a person reads: which limit, what is left, when to try again."""
    values = {"allowed": _amount(refusal.allowed), "used": _amount(refusal.used),
              "requested": _amount(refusal.requested),
              "remaining": _amount(refusal.remaining)}
    if refusal.limit == "ACTIVE_TASKS_PER_USER":
        text = _("Limit reached: at most %(allowed)s unfinished tasks per user; you have "
                 "%(used)s, so %(remaining)s more can start. Try again when one has "
                 "finished.") % values
    elif refusal.limit == "CREDITS_PER_USER_PER_DAY":
        text = _("Limit reached: %(allowed)s credits per user in 24 hours. This task needs "
                 "about %(requested)s credits and %(remaining)s are left.") % values
    else:
        text = _("Limit reached: %(allowed)s credits for the whole site in 24 hours. This "
                 "task needs about %(requested)s credits and %(remaining)s are left.") % values
    if refusal.limit != "ACTIVE_TASKS_PER_USER" and refusal.requested > refusal.allowed:
        text += " " + _("This task alone costs more than the limit allows.")
    elif retry_after is not None:
        minutes = max(1, math.ceil(retry_after / 60))
        text += " " + ngettext("Enough frees up in about %(minutes)d minute.",
                               "Enough frees up in about %(minutes)d minutes.",
                               minutes) % {"minutes": minutes}
    return text


def refuse(refusal: Refusal, *, request: Any = None) -> EvolinkLimitExceededError:
    """The error for ``refusal`` (computing when it frees up), after sending the
    ``limit_exceeded`` signal. Call it outside the transaction of :func:`reserve`."""
    retry_after = seconds_until_free(refusal)
    error = EvolinkLimitExceededError(
        refusal_message(refusal, retry_after),
        limit=refusal.limit, allowed=refusal.allowed, used=refusal.used,
        requested=refusal.requested, remaining=refusal.remaining, retry_after=retry_after,
    )
    signals.limit_exceeded.send(
        sender=ImageTask, user=refusal.user, limit=refusal.limit, allowed=refusal.allowed,
        used=refusal.used, requested=refusal.requested, remaining=refusal.remaining,
        retry_after=retry_after, request=request,
    )
    return error


def learn_price(task: ImageTask) -> None:
    """Correct the price table from Evolink's ``credits_reserved`` for ``task``, when it
    differs from the estimate the task was checked with (no write when it agrees)."""
    if task.credits_reserved is None or task.credits_estimated is None:
        return
    seen = per_image(task.credits_reserved, task.n)
    if seen == per_image(task.credits_estimated, task.n):
        return
    now = timezone.now()
    ModelPrice.objects.bulk_create(
        [ModelPrice(model=task.model, params=price_params(task.params),
                    params_key=price_key(task.params), credits_per_image=seen, seen_at=now,
                    updated_at=now)],
        update_conflicts=True, unique_fields=["model", "params_key"],
        update_fields=["credits_per_image", "seen_at", "updated_at"],
    )


@dataclass(frozen=True)
class Standing:
    """One user's use of the per-user limits in the last 24 hours (the admin's list)."""

    user: Any
    active: int
    credits: Decimal
    limits: Limits

    @property
    def shares(self) -> dict[str, Decimal]:
        """Used share (0..1 and above) of each per-user limit that is set."""
        out: dict[str, Decimal] = {}
        for name, used in (("ACTIVE_TASKS_PER_USER", Decimal(self.active)),
                           ("CREDITS_PER_USER_PER_DAY", self.credits)):
            allowed = getattr(self.limits, name)
            if allowed is not None:
                out[name] = Decimal(1) if allowed == 0 else used / Decimal(allowed)
        return out

    @property
    def near(self) -> bool:
        return any(share >= NEAR_SHARE for share in self.shares.values())


def site_credits_used(now: datetime | None = None) -> Decimal:
    """Credits the whole site reserved in the last 24 hours (as the limit counts them)."""
    now = now or timezone.now()
    total = (ImageTask.objects.filter(COUNTED, created_at__gt=now - WINDOW)
             .aggregate(total=Sum(AMOUNT, output_field=_CREDITS)))["total"]
    return Decimal(total or 0)


def standings(now: datetime | None = None, *, max_users: int = 200) -> list[Standing]:
    """The users with unfinished tasks or credits in the last 24 hours, with their
    per-user limits (``limits_for(user, None)``), nearest to a limit first; at most
    ``max_users`` (those who reserved most)."""
    now = now or timezone.now()
    since = now - WINDOW
    unfinished = Q(status__in=sorted(UNFINISHED_STATUSES))
    rows = list(
        ImageTask.objects.order_by().filter(user__isnull=False)
        .filter(unfinished | Q(created_at__gt=since))
        .values("user")
        .annotate(active=Count("pk", filter=unfinished),
                  spent=Sum(AMOUNT, filter=COUNTED & Q(created_at__gt=since),
                            output_field=_CREDITS))
        .order_by(F("spent").desc(nulls_last=True), "-active")[:max_users]
    )
    users = get_user_model()._default_manager.in_bulk([r["user"] for r in rows])
    found = [
        Standing(user=users[r["user"]], active=r["active"], credits=Decimal(r["spent"] or 0),
                 limits=limits_for(users[r["user"]], None))
        for r in rows if r["user"] in users
    ]
    return sorted(found, key=lambda s: max(s.shares.values(), default=Decimal(0)),
                  reverse=True)


__all__ = [
    "LIMIT_NAMES",
    "WINDOW",
    "Limits",
    "Refusal",
    "Standing",
    "configured_limits",
    "learn_price",
    "limit_errors",
    "limits_for",
    "refuse",
    "reserve",
    "site_credits_used",
    "standings",
]
