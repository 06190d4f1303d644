"""``manage.py evolink_poll [--all] [--limit N] [--enqueue]``: one poll sweep now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from ...background.queue import enqueue_sweep
from ...background.sweep import run_sweep


class Command(BaseCommand):
    help = _("Run one poll sweep over due Evolink tasks (--all: every unfinished task).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", dest="all_tasks",
                            help=_("Poll every unfinished task, due or not."))
        parser.add_argument("--limit", type=int, default=None,
                            help=_("Poll at most this many tasks."))
        parser.add_argument("--enqueue", action="store_true",
                            help=_("Hand the sweep to a django-q2 worker instead of running it "
                                   "here."))

    def handle(self, *args: Any, all_tasks: bool = False, limit: int | None = None,
               enqueue: bool = False, **options: Any) -> None:
        if limit is not None and limit < 1:
            raise CommandError(_("--limit must be a whole number >= 1."))
        if enqueue:

            enqueue_sweep(all_tasks=all_tasks)
            self.stdout.write(_("Sweep enqueued."))
            return

        counts = run_sweep(all_tasks=all_tasks, limit=limit)
        shown = ", ".join(f"{k}={v}" for k, v in counts.items() if v) or _("nothing to do")
        self.stdout.write(_("Sweep done: %(counts)s") % {"counts": shown})
