"""What staff can do: the admin actions, and the per-row loop that tries each selected row
and reports it (a message per row, an admin log entry per success, never a server error).

The rules the actions trigger live in the domain layers: ``core.services`` (refresh,
resubmit, and re-applying a recorded delivery under the callback trust rule:
``services.reapply_event``) and
``background.downloads.retry_missing_images`` (download missing images).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from ..background.downloads import RetryRequest, retry_missing_images
from ..core import services
from ..core.models import EventSource, ImageTask, Status, TaskEvent
from ..core.services import body_is_trusted, reapply_event
from ..core.transitions import ApplyResult, rotate_callback_token
from ..exceptions import EvolinkError, EvolinkValidationError
from .display import safe_text

logger = logging.getLogger("django_evolink.admin")

#: What :meth:`ActionReporting._attempt` answers when the work raised.
FAILED = object()


class ActionReporting(admin.ModelAdmin):
    """The per-row loop of the actions: at most :attr:`max_action_rows` rows, each tried
    on its own and reported with a message; successes are logged in the admin history."""

    #: Most rows one action processes (actions talk to Evolink synchronously).
    max_action_rows = 100

    def has_evolink_change_permission(self, request: HttpRequest) -> bool:
        """Who may run actions that change a task (refresh, download, re-apply)."""
        opts = ImageTask._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def _limit_rows(self, request: HttpRequest, queryset: QuerySet) -> list | None:
        """The selected rows, or None (and an error message) when there are too many."""
        rows = list(queryset[: self.max_action_rows + 1])
        if len(rows) > self.max_action_rows:
            self.message_user(
                request,
                gettext(
                    "Select at most %(max)d rows for this action (it talks to Evolink "
                    "for each); nothing was done."
                ) % {"max": self.max_action_rows},
                messages.ERROR,
            )
            return None
        return rows

    def _attempt(
        self,
        request: HttpRequest,
        work: Callable[[], Any],
        *,
        failure: str,
        subject: dict[str, Any],
        log: tuple[Any, ...],
        on_evolink_error: Callable[[EvolinkError], str] | None = None,
    ) -> Any:
        """Run one selected row's ``work()``; answer its result, or ``FAILED`` if it raised.

        With ``on_evolink_error``, an :class:`EvolinkError` is reported as the ERROR
        message it answers. Any other exception is logged with its traceback
        (``logger.exception(*log)``) and reported as
        ``failure % {**subject, "error": "<type>: <text>"}``.
        """
        try:
            return work()
        except Exception as exc:
            if on_evolink_error is not None and isinstance(exc, EvolinkError):
                text = on_evolink_error(exc)
            else:
                logger.exception(*log)
                text = failure % {**subject, "error": safe_text(f"{type(exc).__name__}: {exc}")}
            self.message_user(request, text, messages.ERROR)
            return FAILED

    def _done(self, request: HttpRequest, obj: Any, change_message: str, message: str,
              level: int = messages.SUCCESS) -> None:
        """Record a successful action on ``obj`` in its history and tell the user."""
        self.log_change(request, obj, change_message)
        self.message_user(request, message, level)


class TaskActions(ActionReporting):
    """The image task actions, also offered as buttons on a task's change page."""

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        """Refreshing changes the task: the *change* permission."""
        return self.has_evolink_change_permission(request)

    def has_download_permission(self, request: HttpRequest) -> bool:
        """Downloading changes the task's images: the *change* permission."""
        return self.has_evolink_change_permission(request)

    def has_resubmit_permission(self, request: HttpRequest) -> bool:
        """Resubmitting spends credits: it needs the *add* permission of image tasks."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.add_{opts.model_name}")

    @admin.action(description=_("Refresh from Evolink"), permissions=("refresh",))
    def refresh_from_evolink(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Ask Evolink about each task and apply the answer (``services.refresh_task``)."""
        rows = self._limit_rows(request, queryset)
        for task in rows or ():
            short = str(task.pk)[:8]
            if not task.evolink_id:
                self.message_user(
                    request,
                    gettext("%(task)s: never accepted by Evolink, nothing to refresh.")
                    % {"task": short},
                    messages.WARNING,
                )
                continue
            before = task.status

            def refresh(task: ImageTask = task) -> ImageTask:
                return services.refresh_task(task, source=EventSource.ADMIN)

            def not_asked(exc: EvolinkError, short: str = short) -> str:
                return gettext("%(task)s: Evolink could not be asked: %(error)s") % {
                    "task": short, "error": safe_text(exc)}

            result = self._attempt(
                request,
                refresh,
                failure=gettext("%(task)s: refresh failed: %(error)s"),
                subject={"task": short},
                log=("admin refresh of task %s failed", task.pk),
                on_evolink_error=not_asked,
            )
            if result is FAILED:
                continue
            self._done(
                request, task, gettext("Refreshed from Evolink."),
                gettext("%(task)s: refreshed, status %(before)s → %(after)s.")
                % {"task": short, "before": before, "after": task.status},
            )

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        """Rotating a callback token changes the task: the *change* permission."""
        return self.has_evolink_change_permission(request)

    @admin.action(description=_("Rotate the callback token (old callback URL stops working)"),
                  permissions=("rotate",))
    def rotate_callback_token(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Give each task a new callback token (``transitions.rotate_callback_token``): its
        old callback URL, e.g. one seen in an access log, answers 404 from now on, and the
        task is tracked by polling."""
        rows = self._limit_rows(request, queryset)
        for task in rows or ():
            short = str(task.pk)[:8]

            def rotate(task: ImageTask = task) -> TaskEvent:
                return rotate_callback_token(task, source=EventSource.ADMIN)

            result = self._attempt(
                request,
                rotate,
                failure=gettext("%(task)s: rotating the token failed: %(error)s"),
                subject={"task": short},
                log=("admin rotation of the callback token of task %s failed", task.pk),
            )
            if result is FAILED:
                continue
            self._done(
                request, task, gettext("Rotated the callback token."),
                gettext("%(task)s: callback token rotated; its old callback URL answers 404 "
                        "and the task is tracked by polling.") % {"task": short},
            )

    @admin.action(description=_("Download missing images"), permissions=("download",))
    def download_missing_images(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Give each completed task's missing images another try now
        (``downloads.retry_missing_images``); expired links are reported, not tried."""
        rows = self._limit_rows(request, queryset)
        for task in rows or ():
            short = str(task.pk)[:8]
            if task.status != Status.COMPLETED:
                self.message_user(
                    request,
                    gettext("%(task)s: not completed (%(status)s), no images to download.")
                    % {"task": short, "status": task.status},
                    messages.WARNING,
                )
                continue

            def download(task: ImageTask = task) -> RetryRequest:
                return retry_missing_images(task)

            retry = self._attempt(
                request,
                download,
                failure=gettext("%(task)s: the download could not be queued: %(error)s"),
                subject={"task": short},
                log=("admin: enqueueing downloads of task %s failed", task.pk),
            )
            if retry is FAILED:
                continue
            if not retry.missing:
                self.message_user(
                    request,
                    gettext("%(task)s: every image is already stored.") % {"task": short},
                    messages.INFO,
                )
            elif not retry.scheduled:
                self.message_user(
                    request,
                    gettext("%(task)s: Evolink's links to the missing images have expired; "
                            "they cannot be downloaded any more.") % {"task": short},
                    messages.WARNING,
                )
            else:
                self._done(
                    request, task, gettext("Queued the download of missing images."),
                    ngettext(
                        "%(task)s: download of %(count)d missing image queued.",
                        "%(task)s: download of %(count)d missing images queued.",
                        retry.scheduled,
                    ) % {"task": short, "count": retry.scheduled},
                )

    @admin.action(description=_("Resubmit as a new task"), permissions=("resubmit",))
    def resubmit_as_new_task(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Create a new task with each task's request: model, prompt, images and the
        model's parameters (spends credits)."""
        rows = self._limit_rows(request, queryset)
        for task in rows or ():
            short = str(task.pk)[:8]

            def resubmit(task: ImageTask = task) -> ImageTask:
                return services.create_like(task, user=task.user, request=request)

            def refused(exc: EvolinkError, task: ImageTask = task) -> str:
                return self._resubmit_refused(request, task, exc)

            new = self._attempt(
                request,
                resubmit,
                failure=gettext("%(task)s: resubmission failed: %(error)s"),
                subject={"task": short},
                log=("admin resubmit of task %s failed", task.pk),
                on_evolink_error=refused,
            )
            if new is FAILED:
                continue
            self.log_addition(request, new, gettext("Resubmitted from %(task)s.")
                              % {"task": task.pk})
            url = reverse("admin:django_evolink_imagetask_change", args=[new.pk])
            self._done(
                request, task, gettext("Resubmitted as %(new)s.") % {"new": new.pk},
                format_html(
                    '{} <a href="{}">{}</a> ({})',
                    gettext("%(task)s: resubmitted as new task") % {"task": short},
                    url,
                    str(new.pk)[:8],
                    new.get_status_display(),
                ),
            )

    def _resubmit_refused(self, request: HttpRequest, task: ImageTask,
                          exc: EvolinkError) -> str:
        """The ERROR message of a resubmission Evolink (or the catalogue) refused."""
        short = str(task.pk)[:8]
        if isinstance(exc, EvolinkValidationError):
            return gettext("%(task)s: not resubmitted, the request is no longer valid: "
                           "%(error)s") % {"task": short, "error": safe_text(exc)}
        new = getattr(exc, "task", None)
        if new is None:
            return gettext("%(task)s: not resubmitted: %(error)s") % {
                "task": short, "error": safe_text(exc)}
        # the new task was recorded (and failed): keep its history
        self.log_addition(request, new, gettext("Resubmitted from %(task)s.") % {"task": task.pk})
        return gettext("%(task)s: new task %(new)s was refused by Evolink: %(error)s") % {
            "task": short, "new": str(new.pk)[:8], "error": safe_text(exc)}

    # ---------------------------------------------------------------- change-page buttons

    def object_actions(self, request: HttpRequest) -> list[tuple[str, str]]:
        """(name, label) of the actions offered as buttons on the change page."""
        actions = self.get_actions(request)
        return [(name, str(_action_description(actions[name]))) for name in self.actions or ()
                if isinstance(name, str) and name in actions]

    def render_change_form(self, request: HttpRequest, context: dict[str, Any],
                           add: bool = False, change: bool = False, form_url: str = "",
                           obj: Any = None) -> HttpResponse:
        """The change page, with a button per action the user may run."""
        if obj is not None:
            context["evolink_object_actions"] = [
                (
                    reverse(
                        f"admin:{self.opts.app_label}_{self.opts.model_name}_object_action",
                        args=[obj.pk, name],
                    ),
                    label,
                )
                for name, label in self.object_actions(request)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def object_action_view(self, request: HttpRequest, object_id: str,
                           action: str) -> HttpResponse:
        """POST only: run ``action`` on this one task (a change-page button)."""
        return _object_action(self, request, object_id, action)


def _action_func(action: Any) -> Any:
    """The callable of an entry of ``get_actions()`` (an Action on Django 6.1+, a tuple before)."""
    return action.func if hasattr(action, "func") else action[0]


def _action_description(action: Any) -> Any:
    """The description of an entry of ``get_actions()``."""
    return action.description if hasattr(action, "description") else action[2]


def _object_action(model_admin: TaskActions, request: HttpRequest, object_id: str,
                   action: str) -> HttpResponse:
    """Run one changelist action on one task from its change page, then go back."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    actions = model_admin.get_actions(request)
    if action not in actions:
        raise PermissionDenied
    obj = model_admin.get_object(request, object_id)
    if obj is None:
        raise Http404(gettext("No such image task."))
    func = _action_func(actions[action])
    queryset = model_admin.get_queryset(request).filter(pk=obj.pk)
    response = func(model_admin, request, queryset)
    if isinstance(response, HttpResponse):
        return response
    return HttpResponseRedirect(
        reverse("admin:django_evolink_imagetask_change", args=[obj.pk])
    )


class EventActions(ActionReporting):
    """The task event action: re-apply a recorded delivery through the transitions."""

    def has_reapply_permission(self, request: HttpRequest) -> bool:
        """Re-applying changes the task: the *change* permission of image tasks."""
        return self.has_evolink_change_permission(request)

    @admin.action(
        description=_("Re-apply the recorded delivery (a callback is verified with Evolink)"),
        permissions=("reapply",),
    )
    def reapply_events(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Apply each recorded delivery again, oldest first, under the callback receiver's
        trust rule (``services.reapply_event``): Evolink's answers are applied as recorded;
        a callback body (unless ``TRUST_CALLBACK_BODY``) is only a hint, and the task is
        fetched from Evolink instead."""
        rows = self._limit_rows(request, queryset.order_by("received_at", "id"))
        for event in rows or ():
            label = gettext("event %(event)s of %(task)s") % {
                "event": event.pk, "task": str(event.task_id)[:8]
            }
            trusted = body_is_trusted(event.source)
            if not isinstance(event.payload, dict):
                self.message_user(
                    request,
                    gettext("%(event)s: no recorded payload to re-apply.") % {"event": label},
                    messages.WARNING,
                )
                continue

            def reapply(event: TaskEvent = event) -> ApplyResult | None:
                return reapply_event(event, source=EventSource.ADMIN)

            result = self._attempt(
                request,
                reapply,
                failure=gettext("%(event)s: re-applying failed: %(error)s"),
                subject={"event": label},
                log=("admin re-apply of event %s failed", event.pk),
            )
            if result is FAILED:
                continue
            if result is None:
                self.message_user(
                    request,
                    gettext("%(event)s: its body is not trusted (source %(source)s) and Evolink "
                            "never accepted the task, so there is nothing to verify it with; "
                            "nothing was applied.") % {"event": label, "source": event.source},
                    messages.WARNING,
                )
                continue
            how = "" if trusted else " " + gettext(
                "Its body was not applied: a %(source)s body is not trusted (anyone holding "
                "the callback URL can post one), so the task was fetched from Evolink and "
                "that answer applied.") % {"source": event.source}
            level = messages.SUCCESS if result.changed else messages.INFO
            self._done(
                request, event.task, gettext("Re-applied event %(event)s.") % {"event": event.pk},
                gettext("%(event)s: re-applied (%(outcome)s), status %(before)s → %(after)s.")
                % {
                    "event": label,
                    "outcome": result.event.get_outcome_display()
                    if hasattr(result.event, "get_outcome_display") else result.outcome,
                    "before": result.old_status,
                    "after": result.new_status,
                } + how,
                level,
            )
