"""``manage.py evolink_rotate_token TASK_ID [TASK_ID ...] | --unfinished``: new callback
tokens, so callback URLs that leaked (an access log, a proxy) stop working."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from ...core.models import EventSource, ImageTask
from ...core.transitions import rotate_callback_token


class Command(BaseCommand):
    help = _("Rotate the callback token of tasks: their old callback URLs answer 404 from now "
             "on and the tasks are tracked by polling.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task_ids", nargs="*", metavar="TASK_ID",
                            help=_("The id (UUID) of a task."))
        parser.add_argument("--unfinished", action="store_true",
                            help=_("Every unfinished task that has a callback token (e.g. "
                                   "after an access log holding callback URLs leaked)."))

    def handle(self, *args: Any, task_ids: Sequence[str] = (), unfinished: bool = False,
               **options: Any) -> None:
        if bool(task_ids) == bool(unfinished):
            raise CommandError(_("Give one or more task ids, or --unfinished (not both)."))
        if unfinished:
            tasks = list(ImageTask.objects.unfinished().exclude(callback_token_hash=""))
        else:
            tasks = []
            for value in task_ids:
                try:
                    pk = uuid.UUID(value)
                except ValueError:
                    raise CommandError(_("%(value)r is not a task id (a UUID).")
                                       % {"value": value})
                task = ImageTask.objects.filter(pk=pk).first()
                if task is None:
                    raise CommandError(_("No task with the id %(id)s.") % {"id": pk})
                tasks.append(task)
        for task in tasks:
            rotate_callback_token(task, source=EventSource.SYSTEM,
                                  note="manage.py evolink_rotate_token")
            self.stdout.write(_("%(task)s: callback token rotated.") % {"task": task.pk})
        self.stdout.write(_("%(n)d task(s) rotated.") % {"n": len(tasks)})
