"""``manage.py evolink_submit [--model M] [--prompt P] [--image URL_OR_PATH ...] [--n N]
[--param NAME=VALUE ...] [--wait]``."""

from __future__ import annotations

import os
import time
from typing import Any, cast

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from ... import conf
from ...background.downloads import download_task_images
from ...core import services
from ...core.models import ImageTask, Status
from ...evolink import catalogue
from ...evolink.client import get_client
from ...exceptions import EvolinkError, EvolinkLimitExceededError, EvolinkValidationError

BAR = 30


def progress_bar(progress: int, status: str) -> str:
    """``[#########---------------]  30% processing`` (plain text)."""
    progress = max(0, min(100, int(progress or 0)))
    filled = BAR * progress // 100
    return f"[{'#' * filled}{'-' * (BAR - filled)}] {progress:3d}% {status}"


class Command(BaseCommand):
    help = _("Submit an image task to Evolink from the shell; --wait follows it to the end and "
             "prints where the stored images are.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prompt", default=None,
                            help=_("What to make (required by most models)."))
        parser.add_argument("--image", action="append", default=[], dest="images",
                            help=_("An http(s) URL or a local file (uploaded); repeat for more. "
                                   "Text-to-image models take none."))
        parser.add_argument("--n", type=int, default=None, help=_("Images to generate."))
        parser.add_argument("--model", default=None,
                            help=_("Evolink model (default EVOLINK['DEFAULT_MODEL']); "
                                   "evolink_models lists them."))
        parser.add_argument("--param", action="append", default=[], dest="params",
                            metavar="NAME=VALUE",
                            help=_("A parameter of the model by Evolink's name, e.g. "
                                   "--param size=16:9 (numbers, true/false and JSON are read "
                                   "as the parameter's type); repeat for more."))
        parser.add_argument("--wait", action="store_true",
                            help=_("Show progress until the task ends, then the stored files."))
        parser.add_argument("--timeout", type=float, default=None,
                            help=_("Seconds --wait waits (default: EVOLINK['TASK_TIMEOUT'])."))
        parser.add_argument("--interval", type=float, default=2.0,
                            help=_("Seconds between two looks at the task with --wait."))
        parser.add_argument("--poll-here", action="store_true",
                            help=_("With --wait, ask Evolink from this process (automatic when "
                                   "no django-q2 worker runs: Q_CLUSTER['sync'] is True)."))

    # ------------------------------------------------------------------ inputs
    def _image_url(self, value: str, spec: catalogue.ModelSpec) -> str:
        if value.lower().startswith(("http://", "https://")):
            return value
        if not os.path.isfile(value):
            raise CommandError(_("%(path)s: no such file; give an http(s) URL or the path of a "
                                 "local image.") % {"path": value})
        with open(value, "rb") as fileobj:
            errors, info = catalogue.image_file_errors(spec, fileobj, label=value)
            if errors:
                raise CommandError(" ".join(str(e) for e in errors))
            try:
                data = get_client().upload_file(fileobj, file_name=os.path.basename(value),
                                                content_type=info.get("content_type"))
            except EvolinkError as exc:
                raise CommandError(_("%(path)s: the upload failed: %(error)s")
                                   % {"path": value, "error": exc})
        url = data.get("file_url") or data.get("download_url")
        if not url:
            raise CommandError(_("%(path)s: Evolink's upload answer has no file URL.")
                               % {"path": value})
        self.stdout.write(_("Uploaded %(path)s -> %(url)s") % {"path": value, "url": url})
        return url

    def _params(self, values: list[str], spec: catalogue.ModelSpec) -> dict[str, Any]:
        """``--param NAME=VALUE`` options as the model's parameters (typed by its schema)."""
        params: dict[str, Any] = {}
        for value in values:
            name, sep, text = value.partition("=")
            if not sep or not name.strip():
                raise CommandError(_("--param %(value)s: write NAME=VALUE, e.g. size=16:9.")
                                   % {"value": value})
            params[name.strip()] = spec.form_value(name.strip(), text)
        return params

    # ------------------------------------------------------------------ main
    def handle(self, *args: Any, prompt: str | None = None, images: list[str] | None = None,
               n: int | None = None, model: str | None = None, params: list[str] | None = None,
               wait: bool = False, timeout: float | None = None, interval: float = 2.0,
               poll_here: bool = False, **options: Any) -> None:

        try:
            spec = catalogue.get_spec(model)
            extra = self._params(list(params or ()), spec)
            # refused by a limit: say so before local files are uploaded to Evolink
            services.check_limits(model=spec.name, n=n, params=extra)
            urls = [self._image_url(v, spec) for v in images or ()]
            task = services.create_task(prompt=prompt, image_urls=urls, n=n, model=model,
                                        params=extra)
        except EvolinkValidationError as exc:
            raise CommandError("; ".join(f"{field}: {' '.join(map(str, msgs))}"
                                         for field, msgs in exc.errors.items()))
        except EvolinkLimitExceededError as exc:
            raise CommandError(_("Not submitted: %(error)s") % {"error": exc})
        except EvolinkError as exc:
            raise CommandError(_("Evolink refused the task: %(error)s") % {"error": exc})
        self.stdout.write(_("Task %(id)s: %(status)s (Evolink id %(eid)s)")
                          % {"id": task.pk, "status": task.status, "eid": task.evolink_id or "-"})
        if not wait:
            return
        q = getattr(settings, "Q_CLUSTER", {}) or {}
        here = poll_here or bool(q.get("sync"))
        limit = float(timeout if timeout is not None else conf.get("TASK_TIMEOUT"))
        self._wait(task, here, limit, max(0.05, interval))

    def _wait(self, task: ImageTask, here: bool, limit: float, interval: float) -> None:
        deadline = time.monotonic() + limit
        tty = self.stdout.isatty()
        last = None
        while True:
            if here and task.evolink_id and not task.is_final:
                try:
                    services.refresh_task(task)
                except EvolinkError as exc:
                    self.stderr.write(_("Status check failed: %(error)s") % {"error": exc})
            else:
                # the cluster polls it: watched, every WATCH_POLL_INTERVAL (the watch loop)
                # rather than at the sweep's minute tick
                services.watch_task(task)
                task.refresh_from_db()
            line = progress_bar(task.progress, task.status)
            if line != last or tty:
                self.stdout.write("\r" + line, ending="")
                self.stdout.flush()
                last = line
            if task.is_final:
                break
            if time.monotonic() > deadline:
                self.stdout.write("")
                raise CommandError(_("Gave up waiting after %(s)g seconds; the task is %(st)s.")
                                   % {"s": limit, "st": task.status})
            time.sleep(interval)
        self.stdout.write("")
        if task.status != Status.COMPLETED:
            raise CommandError(_("The task ended %(status)s: %(code)s: %(message)s")
                               % {"status": task.status, "code": task.error_code or "-",
                                  "message": task.error_message or "-"})
        while True:
            if here:
                download_task_images(task.pk)
            images = list(task.images.order_by("index"))
            if images and all(i.file or i.download_error for i in images):
                break
            if time.monotonic() > deadline:
                raise CommandError(_("The task completed but its images were not stored within "
                                     "%(s)g seconds.") % {"s": limit})
            time.sleep(interval)
        failed = False
        for image in images:
            if image.file:
                try:
                    where = image.file.path
                except NotImplementedError:
                    where = cast(str, image.file.name)  # a truthy file has a name
                self.stdout.write(where)
            else:
                failed = True
                self.stderr.write(_("Image %(i)d was not stored: %(error)s")
                                  % {"i": image.index, "error": image.download_error})
        if failed:
            raise CommandError(_("Some images could not be stored."))
