"""The recurring poll sweep, installed idempotently as a django-q2 Schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models.signals import post_migrate

if TYPE_CHECKING:
    from django.apps import AppConfig
    from django_q.models import Schedule  # (django-q2 is untyped: Schedule is Any)

from .. import conf
from .queue import SWEEP_JOB

SWEEP_FUNC = SWEEP_JOB
#: Where 0.1.0 stored the sweep; rewritten to :data:`SWEEP_FUNC` when found.
LEGACY_SWEEP_FUNCS = ("django_evolink.tasks.sweep",)
SWEEP_NAME = "django-evolink poll sweep"


def install_schedule(*, using: str = "default") -> tuple[Schedule, bool]:
    """Create the sweep Schedule when missing; keep an existing one (and an admin's
    edits to it) and delete duplicates. Returns ``(schedule, created)``."""
    from django_q.models import Schedule

    Schedule.objects.using(using).filter(func__in=LEGACY_SWEEP_FUNCS).update(func=SWEEP_FUNC)
    existing = list(Schedule.objects.using(using).filter(func=SWEEP_FUNC).order_by("id"))
    if existing:
        keep, extra = existing[0], existing[1:]
        if extra:
            Schedule.objects.using(using).filter(pk__in=[s.pk for s in extra]).delete()
        return keep, False
    schedule = Schedule.objects.using(using).create(
        func=SWEEP_FUNC,
        name=SWEEP_NAME,
        schedule_type=Schedule.MINUTES,
        minutes=int(conf.get("SWEEP_MINUTES")),
        repeats=-1,
    )
    return schedule, True


def schedule_table_exists(using: str = "default") -> bool:
    """True when django-q2's tables exist on ``using`` (its migrations ran)."""
    from django.apps import apps
    from django.db import connections

    if not apps.is_installed("django_q"):
        return False
    from django_q.models import Schedule

    with connections[using].cursor() as cursor:
        tables = connections[using].introspection.table_names(cursor)
    return Schedule._meta.db_table in tables


def find_schedule(using: str = "default") -> Schedule | None:
    """The installed sweep Schedule, or None (also when django-q2's tables are missing)."""
    if not schedule_table_exists(using):
        return None
    from django_q.models import Schedule

    return (
        Schedule.objects.using(using)
        .filter(func__in=(SWEEP_FUNC, *LEGACY_SWEEP_FUNCS))
        .order_by("id")
        .first()
    )


def _post_migrate(
    sender: AppConfig, app_config: AppConfig | None = None, using: str = "default",
    **kwargs: Any,
) -> None:
    """Install the sweep after ``migrate`` (and ``flush``, which also sends post_migrate)."""
    if not conf.get("INSTALL_SCHEDULE"):
        return
    if not schedule_table_exists(using):
        return
    install_schedule(using=using)


def connect_post_migrate(app_config: AppConfig) -> None:
    post_migrate.connect(_post_migrate, sender=app_config, dispatch_uid="django_evolink_schedule")
