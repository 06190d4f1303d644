"""Models mirroring Evolink tasks: ``ImageTask``, ``GeneratedImage``, ``TaskEvent``.

Mirrored fields carry Evolink's names (``status``, ``progress``, ``billing_rule``,
...). Local bookkeeping (polling schedule, lease, callback token hash, stored
files) is named apart so a reader can tell Evolink's truth from ours.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.core.files.storage import Storage

from .. import conf
from ..evolink import task_errors
from ..exceptions import redact
from .pricing import price_key


class Status(models.TextChoices):
    # in context: other apps' catalogues (django-q2's) translate the bare words differently
    QUEUED = "queued", pgettext_lazy("task status", "Queued")
    PENDING = "pending", pgettext_lazy("task status", "Pending")
    PROCESSING = "processing", pgettext_lazy("task status", "Processing")
    COMPLETED = "completed", pgettext_lazy("task status", "Completed")
    FAILED = "failed", pgettext_lazy("task status", "Failed")
    CANCELLED = "cancelled", pgettext_lazy("task status", "Cancelled")


#: Statuses after which nothing changes.
FINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})
#: Statuses of tasks Evolink is still working on (what polling looks at).
ACTIVE_STATUSES = frozenset({Status.PENDING, Status.PROCESSING})
#: Order in which a task moves; a status never moves to a lower rank.
STATUS_RANK: dict[str, int] = {
    Status.QUEUED: 0,
    Status.PENDING: 1,
    Status.PROCESSING: 2,
    Status.COMPLETED: 3,
    Status.FAILED: 3,
    Status.CANCELLED: 3,
}


def _storage() -> Storage:
    return conf.storage()


def result_upload_to(instance: GeneratedImage, filename: str) -> str:
    """Deterministic path of a stored result: ``<RESULTS_PATH>/<task id>/<index>.<ext>``."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else "png"
    return f"{conf.get('RESULTS_PATH').rstrip('/')}/{instance.task_id}/{instance.index}.{ext}"


#: Statuses of tasks that are not final yet (the partial index's condition).
UNFINISHED_STATUSES = frozenset({Status.QUEUED, *ACTIVE_STATUSES})


class ImageTaskQuerySet(models.QuerySet):
    """The task selections the library uses, named once."""

    def unfinished(self) -> ImageTaskQuerySet:
        """Tasks not final yet (written as ``IN``, so the partial index serves it)."""
        return self.filter(status__in=sorted(UNFINISHED_STATUSES))

    def active(self) -> ImageTaskQuerySet:
        """Tasks Evolink is working on (``pending`` or ``processing``)."""
        return self.filter(status__in=sorted(ACTIVE_STATUSES))

    def for_user(self, user: AbstractBaseUser) -> ImageTaskQuerySet:
        """Tasks owned by ``user``."""
        return self.filter(user=user)


class ImageTask(models.Model):
    """One generation request, mirrored from Evolink."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="evolink_tasks",
        verbose_name=_("user"),
    )
    # --- mirrored from Evolink ----------------------------------------------------
    evolink_id = models.CharField(
        _("Evolink id"), max_length=128, unique=True, null=True, blank=True
    )
    model = models.CharField(_("model"), max_length=64)
    prompt = models.TextField(_("prompt"), blank=True)
    image_urls = models.JSONField(_("image URLs"), default=list, blank=True)
    n = models.PositiveSmallIntegerField(_("images requested"), default=1)
    params = models.JSONField(
        _("parameters"),
        default=dict,
        blank=True,
        help_text=_("The model's other parameters, as sent to Evolink under its names."),
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.QUEUED
    )
    progress = models.PositiveSmallIntegerField(_("progress"), default=0)
    billing_rule = models.CharField(_("billing rule"), max_length=32, blank=True)
    credits_reserved = models.DecimalField(
        _("credits reserved"), max_digits=14, decimal_places=4, null=True, blank=True
    )
    user_group = models.CharField(_("user group"), max_length=64, blank=True)
    estimated_time = models.PositiveIntegerField(_("estimated time (s)"), null=True, blank=True)
    can_cancel = models.BooleanField(_("can cancel"), null=True, blank=True)
    error_code = models.CharField(_("error code"), max_length=64, blank=True)
    error_message = models.TextField(_("error message"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    completed_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # --- local bookkeeping ----------------------------------------------------------
    submit_started_at = models.DateTimeField(
        _("submission started"),
        null=True,
        blank=True,
        help_text=_("Set once, before the create request is sent: a task is never sent twice."),
    )
    submitted_at = models.DateTimeField(_("accepted by Evolink"), null=True, blank=True)
    callback_token_hash = models.CharField(
        _("callback token hash"), max_length=64, blank=True, editable=False, db_index=True
    )
    callback_received_at = models.DateTimeField(_("last callback"), null=True, blank=True)
    next_poll_at = models.DateTimeField(_("next poll"), null=True, blank=True)
    poll_count = models.PositiveIntegerField(_("polls"), default=0)
    poll_error_count = models.PositiveIntegerField(_("poll transport errors"), default=0)
    last_polled_at = models.DateTimeField(_("last poll"), null=True, blank=True)
    watched_until = models.DateTimeField(
        _("watched until"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("Someone follows this task until then: it is polled every few seconds."),
    )
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    input_files = models.JSONField(
        _("stored input copies"),
        default=list,
        blank=True,
        help_text=_("Storage names of the copies of uploaded inputs."),
    )
    images_stored_at = models.DateTimeField(_("images stored"), null=True, blank=True)
    credits_estimated = models.DecimalField(
        _("credits estimated"),
        max_digits=14,
        decimal_places=4,
        null=True,
        blank=True,
        help_text=_("What the task was expected to reserve before it was sent (the price "
                    "table); counted against the credit limits until Evolink's figure comes."),
    )

    objects = ImageTaskQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("image task")
        verbose_name_plural = _("image tasks")
        indexes = [
            models.Index(
                fields=["next_poll_at"],
                name="evolink_task_due_idx",
                condition=Q(status__in=["queued", "pending", "processing"]),
            ),
            models.Index(fields=["user", "-created_at"], name="evolink_task_user_idx"),
            models.Index(fields=["status", "-created_at"], name="evolink_task_status_idx"),
            models.Index(fields=["-created_at"], name="evolink_task_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=100),
                name="evolink_task_progress_range",
            ),
        ]

    def __str__(self) -> str:

        text = redact(self.prompt, conf.api_key())
        prompt = text if len(text) <= 40 else text[:39] + "…"
        return f"{str(self.id)[:8]} {self.status} {prompt!r}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def usage(self) -> dict[str, Any]:
        return {
            "billing_rule": self.billing_rule or None,
            "credits_reserved": (
                None
                if self.credits_reserved is None
                else format(self.credits_reserved.normalize(), "f")
            ),
            "user_group": self.user_group or None,
        }

    @property
    def error(self) -> dict[str, str] | None:
        """``{code, message}``, plus ``hint`` (what to change, translated) for a code
        of Evolink's the user can fix; None when the task has no error."""
        if not self.error_code and not self.error_message:
            return None
        error = {"code": self.error_code, "message": self.error_message}
        fix = task_errors.hint(self.error_code)
        if fix is not None:
            error["hint"] = fix
        return error


class GeneratedImage(models.Model):
    """One result image: Evolink's link and our stored copy."""

    task = models.ForeignKey(
        ImageTask, on_delete=models.CASCADE, related_name="images", verbose_name=_("task")
    )
    index = models.PositiveSmallIntegerField(_("index"))
    source_url = models.URLField(_("Evolink URL"), max_length=2048)
    file = models.FileField(
        _("stored file"),
        upload_to=result_upload_to,
        storage=_storage,
        blank=True,
        max_length=255,
    )
    width = models.PositiveIntegerField(_("width"), null=True, blank=True)
    height = models.PositiveIntegerField(_("height"), null=True, blank=True)
    created_at = models.DateTimeField(_("recorded"), default=timezone.now, editable=False)
    # --- local bookkeeping of the download --------------------------------------
    source_expires_at = models.DateTimeField(_("link expires"), null=True, blank=True)
    downloaded_at = models.DateTimeField(_("downloaded"), null=True, blank=True)
    download_attempts = models.PositiveSmallIntegerField(_("download attempts"), default=0)
    next_download_at = models.DateTimeField(_("next download attempt"), null=True, blank=True)
    download_error = models.TextField(_("download error"), blank=True)

    class Meta:
        ordering = ["task", "index"]
        verbose_name = _("generated image")
        verbose_name_plural = _("generated images")
        constraints = [
            models.UniqueConstraint(fields=["task", "index"], name="evolink_image_task_index_uniq"),
        ]

    def __str__(self) -> str:
        return f"{str(self.task_id)[:8]} #{self.index}"

    @property
    def is_stored(self) -> bool:
        return bool(self.file)


class EventSource(models.TextChoices):
    SUBMIT = "submit", _("Submit answer")
    POLL = "poll", _("Poll answer")
    REFRESH = "refresh", _("Refresh")
    CALLBACK = "callback", _("Callback")
    ADMIN = "admin", _("Admin action")
    SYSTEM = "system", _("Local decision")


class EventOutcome(models.TextChoices):
    RECEIVED = "received", _("Received, not yet applied")
    APPLIED = "applied", _("Applied")
    UNCHANGED = "unchanged", _("Nothing new")
    STALE = "stale", _("Stale (older than the task)")
    MALFORMED = "malformed", _("Malformed")
    WRONG_TASK = "wrong_task", _("For another task")
    UNKNOWN_STATUS = "unknown_status", _("Unknown status")
    ERROR = "error", _("Failed while applying")


class TaskEvent(models.Model):
    """Every submit answer, poll answer, callback and admin action, stored first."""

    task = models.ForeignKey(
        ImageTask, on_delete=models.CASCADE, related_name="events", verbose_name=_("task")
    )
    source = models.CharField(_("source"), max_length=16, choices=EventSource.choices)
    payload = models.JSONField(_("payload"), null=True, blank=True)
    headers = models.JSONField(_("headers"), default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(_("remote address"), null=True, blank=True)
    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    outcome = models.CharField(
        _("outcome"), max_length=16, choices=EventOutcome.choices, default=EventOutcome.RECEIVED
    )
    changed = models.BooleanField(_("changed the task"), default=False)
    status_before = models.CharField(_("status before"), max_length=16, blank=True)
    status_after = models.CharField(_("status after"), max_length=16, blank=True)
    note = models.TextField(_("note"), blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = _("task event")
        verbose_name_plural = _("task events")
        indexes = [models.Index(fields=["task", "-received_at"], name="evolink_event_task_idx")]

    def __str__(self) -> str:
        return f"{self.get_source_display()} {self.received_at:%Y-%m-%d %H:%M:%S} {self.outcome}"


class ModelPrice(models.Model):
    """What one image of a model with given parameters cost last time (the price table).

    Learnt from Evolink's ``usage.credits_reserved`` (divided by the images requested)
    whenever a submit answer differs from the estimate; staff may edit it. Read before a
    create to estimate its cost against the credit limits (:mod:`django_evolink.core.limits`).
    """

    model = models.CharField(_("model"), max_length=64)
    params = models.JSONField(
        _("parameters"),
        default=dict,
        blank=True,
        help_text=_("The parameters that set the price (the seed and other per-request "
                    "values left out)."),
    )
    params_key = models.CharField(_("parameters key"), max_length=64, editable=False)
    credits_per_image = models.DecimalField(
        _("credits per image"), max_digits=14, decimal_places=4
    )
    seen_at = models.DateTimeField(
        _("last reported by Evolink"), null=True, blank=True,
    )
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["model", "params_key"]
        verbose_name = _("model price")
        verbose_name_plural = _("model prices")
        constraints = [
            models.UniqueConstraint(fields=["model", "params_key"], name="evolink_price_uniq"),
            models.CheckConstraint(condition=Q(credits_per_image__gte=0),
                                   name="evolink_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.params or {}}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.params_key = price_key(self.params)
        super().save(*args, **kwargs)


class LimitLock(models.Model):
    """One row per scope of the limits (``site``, ``user:<pk>``), written (and so locked)
    at the start of every limited create, so that two creates of one scope are checked
    one after the other and cannot both take the last slot. Holds no figures."""

    key = models.CharField(_("scope"), max_length=64, unique=True)
    touched_at = models.DateTimeField(_("last create checked"), default=timezone.now)

    class Meta:
        verbose_name = _("limit lock")
        verbose_name_plural = _("limit locks")

    def __str__(self) -> str:
        return self.key
