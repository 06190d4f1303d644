"""The recurring sweep Schedule and the django-q2 system checks (W003, W004)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_q.models import Schedule

from django_evolink import checks
from django_evolink.background import schedule

pytestmark = pytest.mark.django_db


def _ids(**kw):
    return [w.id for w in checks.check_schedule(databases=["default"], **kw)]


def test_install_is_idempotent_keeps_edits_and_removes_duplicates(settings):
    obj, created = schedule.install_schedule()
    assert created and obj.minutes == 1 and obj.repeats == -1
    Schedule.objects.filter(pk=obj.pk).update(minutes=5)  # an admin's edit
    Schedule.objects.create(func=schedule.SWEEP_FUNC, schedule_type=Schedule.MINUTES, minutes=1)
    again, created = schedule.install_schedule()
    assert not created and again.pk == obj.pk and again.minutes == 5
    assert Schedule.objects.filter(func=schedule.SWEEP_FUNC).count() == 1


def test_post_migrate_installs_unless_opted_out(settings):
    from django.apps import apps

    config = apps.get_app_config("django_evolink")
    schedule._post_migrate(config, using="default")
    assert not Schedule.objects.exists()  # tests/settings.py opts out
    settings.EVOLINK = {**settings.EVOLINK, "INSTALL_SCHEDULE": True}
    schedule._post_migrate(config, using="default")
    schedule._post_migrate(config, using="default")
    assert Schedule.objects.filter(func=schedule.SWEEP_FUNC).count() == 1


@pytest.mark.django_db(transaction=True)
def test_flush_reinstalls_the_schedule(settings):
    settings.EVOLINK = {**settings.EVOLINK, "INSTALL_SCHEDULE": True}
    call_command("flush", "--no-input", verbosity=0)
    assert Schedule.objects.filter(func=schedule.SWEEP_FUNC).count() == 1


def test_w004_when_schedule_missing(settings):
    assert _ids() == ["django_evolink.W004"]
    warning = checks.check_schedule(databases=["default"])[0]
    assert "INSTALL_SCHEDULE" in warning.msg and "evolink_install_schedule" in warning.hint
    schedule.install_schedule()
    assert _ids() == []
    assert checks.check_schedule(databases=None) == []  # only when asked about a database


def test_w003_retry_not_larger_than_timeout(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 120, "retry": 120}
    assert [w.id for w in checks.check_django_q()] == ["django_evolink.W003"]
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 300, "retry": 360}
    assert checks.check_django_q() == []


def test_sweep_task_function_returns_counts():
    from django_evolink.background import jobs

    counts = jobs.sweep()
    assert set(counts) >= {"claimed", "polled", "completed"}
