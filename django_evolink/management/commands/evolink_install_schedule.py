"""``manage.py evolink_install_schedule``: create the recurring sweep Schedule."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from ...background import schedule


class Command(BaseCommand):
    help = _("Install the django-q2 Schedule of the poll sweep (idempotent; keeps edits).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="default")

    def handle(self, *args: Any, database: str = "default", **options: Any) -> None:
        if not schedule.schedule_table_exists(database):
            raise CommandError(_("django-q2's tables are missing: run 'manage.py migrate' first."))
        obj, created = schedule.install_schedule(using=database)
        if created:
            self.stdout.write(_("Installed the schedule %(name)r (every %(m)s minute(s)).")
                              % {"name": obj.name, "m": obj.minutes})
        else:
            self.stdout.write(_("The schedule %(name)r was already installed; kept as is.")
                              % {"name": obj.name})
