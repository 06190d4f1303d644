"""``manage.py evolink_purge --older-than DAYS [--dry-run]``: retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ... import conf
from ...core.models import FINAL_STATUSES, GeneratedImage, ImageTask, TaskEvent

BATCH = 500


class Command(BaseCommand):
    help = _("Delete finished tasks older than DAYS days with their events and stored files "
             "(results and input copies), in batches.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=float, dest="days", default=None,
                            help=_("Age in days (default: EVOLINK['RETENTION_DAYS'])."))
        parser.add_argument("--dry-run", action="store_true",
                            help=_("Only count what would be deleted."))
        parser.add_argument("--batch-size", type=int, default=BATCH)

    def handle(self, *args: Any, days: float | None = None, dry_run: bool = False,
               batch_size: int = BATCH, **options: Any) -> None:
        if days is None:
            days = conf.get("RETENTION_DAYS")
        if days is None:
            raise CommandError(_("Give --older-than DAYS (or set EVOLINK['RETENTION_DAYS'])."))
        if days < 0 or batch_size < 1:
            raise CommandError(_("--older-than must be >= 0 and --batch-size >= 1."))
        cutoff = timezone.now() - timedelta(days=days)
        qs = ImageTask.objects.filter(status__in=FINAL_STATUSES, created_at__lt=cutoff)
        storage = conf.storage()
        totals = {"tasks": 0, "events": 0, "files": 0}
        if dry_run:
            selected = qs.values("pk")
            totals["tasks"] = qs.count()
            totals["events"] = TaskEvent.objects.filter(task__in=selected).count()
            totals["files"] = (
                GeneratedImage.objects.filter(task__in=selected).exclude(file="").count()
            )
            totals["files"] += sum(len(f or []) for f in qs.values_list("input_files", flat=True))
            self.stdout.write(_("Would delete %(tasks)d task(s), %(events)d event(s), "
                                "%(files)d file(s).") % totals)
            return
        while True:
            ids = list(qs.order_by("created_at").values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            names = list(GeneratedImage.objects.filter(task__in=ids)
                         .exclude(file="").values_list("file", flat=True))
            for inputs in ImageTask.objects.filter(pk__in=ids).values_list("input_files",
                                                                           flat=True):
                names.extend(inputs or [])
            with transaction.atomic():
                totals["events"] += TaskEvent.objects.filter(task__in=ids).delete()[0]
                totals["tasks"] += ImageTask.objects.filter(pk__in=ids).delete()[1].get(
                    ImageTask._meta.label, 0)
            # files after the rows are gone: a crash leaves orphan files, never dead links
            for name in names:
                if name and storage.exists(name):
                    storage.delete(name)
                    totals["files"] += 1
        self.stdout.write(_("Deleted %(tasks)d task(s), %(events)d event(s), %(files)d file(s).")
                          % totals)
