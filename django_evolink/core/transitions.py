"""The one transition function: every Evolink answer about a task goes through here.

Submit answers, poll answers, refreshes, callbacks, admin re-applies and local
decisions (time-outs, refusals) are all applied by :func:`apply_payload` or
:func:`fail_task`. Each call

1. records a :class:`TaskEvent` and applies it in one transaction (one commit per
   delivery; nothing is acknowledged before it): an apply that fails is rolled back as
   a whole and the event is recorded again on its own, with the outcome ``error``,
   before the exception is re-raised, so the delivery survives the failure;
2. locks the task row (``select_for_update``), checks the payload belongs to the
   task and is well-formed;
3. only moves forward: queued < pending < processing < final; progress never
   decreases; a final status never changes; an unknown status is recorded, not
   applied;
4. records result images idempotently on completion;
5. sends the signals once per change, after commit.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from .. import signals
from ..evolink.payloads import PayloadError, Update, parse_payload, storable
from . import hooks, live, tokens
from .models import (
    FINAL_STATUSES,
    STATUS_RANK,
    EventOutcome,
    EventSource,
    GeneratedImage,
    ImageTask,
    Status,
    TaskEvent,
)
from .poll_policy import first_poll_at

logger = logging.getLogger("django_evolink.transitions")

#: Local bookkeeping written with an apply: ``(locked merged task, outcome) -> {field: value}``.
Bookkeeping = Callable[[ImageTask, str], dict[str, Any]]

#: How long Evolink keeps result links alive.
RESULT_LINK_LIFETIME = timedelta(hours=24)


@dataclass
class ApplyResult:
    """What applying one payload did."""

    task: ImageTask
    event: TaskEvent
    outcome: str
    changed: bool
    old_status: str = ""
    new_status: str = ""
    changed_fields: list[str] = field(default_factory=list)

    @property
    def status_changed(self) -> bool:
        return self.old_status != self.new_status


def record_event(
    task: ImageTask | Any,
    source: str,
    payload: Any,
    *,
    headers: dict[str, Any] | None = None,
    remote_addr: str | None = None,
    note: str = "",
    defer: bool = False,
) -> TaskEvent:
    """Store a delivery before anything is applied.

    ``defer=True``: return the event unsaved; :func:`apply_payload` (given it as
    ``event``) inserts it, with its outcome, in the transaction that applies it, so it is
    committed exactly when the apply is (and recorded alone, as ``error``, when the
    apply fails). The caller must not acknowledge the delivery before that.
    """
    task_id = task.pk if isinstance(task, ImageTask) else task
    event = _new_event(
        task_id, source, payload, headers=headers, remote_addr=remote_addr, note=note
    )
    if not defer:
        event.save(force_insert=True)
    return event


def refusal(current: str, new: str) -> str | None:
    """The forward-only rule: why a report of status ``new`` cannot move a task that is
    ``current`` (``unchanged`` for a final task told the same, ``stale`` for anything
    older), or ``None`` when it may be applied."""
    if current in FINAL_STATUSES:
        return EventOutcome.UNCHANGED if new == current else EventOutcome.STALE
    if STATUS_RANK[new] < STATUS_RANK[current]:
        return EventOutcome.STALE
    return None


def _merge(task: ImageTask, update: Update, now: datetime) -> tuple[str, list[str]]:
    """Apply ``update`` to the locked ``task`` in memory; return (outcome, fields)."""
    refused = refusal(task.status, update.status)
    if refused is not None:
        return refused, []
    fields: list[str] = []

    def put(name: str, value: Any) -> None:
        if value is not None and getattr(task, name) != value:
            setattr(task, name, value)
            fields.append(name)

    if update.status != task.status:
        put("status", update.status)
    progress = 100 if update.status == Status.COMPLETED else update.progress
    if progress is not None and progress > task.progress:
        put("progress", progress)
    for name in ("billing_rule", "credits_reserved", "user_group", "estimated_time", "can_cancel"):
        put(name, getattr(update, name))
    if update.status in FINAL_STATUSES:
        put("completed_at", now)
        if update.status != Status.COMPLETED:
            default_code = "task_cancelled" if update.status == Status.CANCELLED else "task_failed"
            put("error_code", update.error_code or default_code)
            put(
                "error_message",
                update.error_message
                or (
                    "Evolink cancelled the task."
                    if update.status == Status.CANCELLED
                    else "Evolink reported the task as failed."
                ),
            )
        for name in ("next_poll_at", "lease_token", "lease_until"):
            if getattr(task, name) is not None:
                setattr(task, name, None)
                fields.append(name)
    return (EventOutcome.APPLIED if fields else EventOutcome.UNCHANGED), fields


def _record_images(task: ImageTask, results: list[str], now: datetime) -> None:
    GeneratedImage.objects.bulk_create(
        [
            GeneratedImage(
                task=task,
                index=i,
                source_url=url,
                source_expires_at=now + RESULT_LINK_LIFETIME,
                next_download_at=now,
            )
            for i, url in enumerate(results)
        ],
        ignore_conflicts=True,
    )


def _after_commit(task: ImageTask, old: str, new: str) -> None:
    def send() -> None:
        signals.task_status_changed.send(
            sender=ImageTask, task=task, old_status=old, new_status=new
        )
        if new == Status.COMPLETED:
            signals.task_completed.send(sender=ImageTask, task=task)
        elif new in FINAL_STATUSES:
            signals.task_failed.send(sender=ImageTask, task=task)

    transaction.on_commit(send, robust=True)
    if new == Status.COMPLETED:
        transaction.on_commit(lambda: hooks.announce_images_recorded(task.pk), robust=True)


def _new_event(
    task_id: Any,
    source: str,
    payload: Any,
    *,
    headers: dict[str, Any] | None = None,
    remote_addr: str | None = None,
    note: str = "",
) -> TaskEvent:
    """The event of a delivery, not saved yet: :func:`finish_event` inserts it together
    with its outcome, in the transaction that applies it (one statement, not two)."""
    return TaskEvent(
        task_id=task_id,
        source=source,
        payload=storable(payload),
        headers=headers or {},
        remote_addr=remote_addr,
        note=note,
    )


def finish_event(event: TaskEvent, **values: Any) -> None:
    """Store the outcome of ``event``: insert it when it is new (deferred), update it
    otherwise."""
    for name, value in values.items():
        setattr(event, name, value)
    if event.pk is None:
        event.save(force_insert=True)
    else:
        TaskEvent.objects.filter(pk=event.pk).update(**values)


def _apply(
    task_id: Any,
    update: Update | None,
    event: TaskEvent,
    source: str,
    error: PayloadError | None = None,
    bookkeeping: Bookkeeping | None = None,
) -> ApplyResult:
    """Lock the task, merge ``update`` forward-only, save it and store the event's outcome.

    Runs inside the caller's transaction (see :func:`_record_and_apply`) and raises when
    anything fails; the caller rolls back and records the delivery as ``error``.
    ``bookkeeping``: see :func:`apply_payload`; its fields are written by the same UPDATE.
    """
    now = timezone.now()
    task = ImageTask.objects.select_for_update().get(pk=task_id)
    old = task.status
    fields: list[str]
    if error is not None:
        outcome, fields = error.outcome, []
        note = str(error)
    elif update is None:
        raise TypeError("_apply needs an update or an error")
    elif update.evolink_id is not None and task.evolink_id != update.evolink_id:
        if task.evolink_id is None and source == EventSource.SUBMIT:
            task.evolink_id = update.evolink_id
            outcome, fields = _merge(task, update, now)
            fields = ["evolink_id", *fields]
            note = ""
        else:
            outcome, fields, note = (
                EventOutcome.WRONG_TASK,
                [],
                (f"payload is for {update.evolink_id!r}, not {task.evolink_id!r}"),
            )
    else:
        outcome, fields = _merge(task, update, now)
        note = ""
    if source == EventSource.CALLBACK and outcome in (
        EventOutcome.APPLIED,
        EventOutcome.UNCHANGED,
        EventOutcome.STALE,
    ):
        task.callback_received_at = now
        fields.append("callback_received_at")
    if fields:
        outcome = (
            EventOutcome.APPLIED
            if outcome == EventOutcome.UNCHANGED
            and any(f != "callback_received_at" for f in fields)
            else outcome
        )
        if "evolink_id" in fields and task.submitted_at is None:
            task.submitted_at = now
            fields.append("submitted_at")
        if task.status not in FINAL_STATUSES and task.next_poll_at is None and task.evolink_id:

            task.next_poll_at = first_poll_at(task, now)
            fields.append("next_poll_at")
    extra = bookkeeping(task, outcome) if bookkeeping is not None else {}
    for name, value in extra.items():
        setattr(task, name, value)
    if fields:
        update_fields = [*dict.fromkeys([*fields, *extra]), "updated_at"]
        if "evolink_id" in fields:
            # the submit answer: another task may already carry this Evolink id (unique)
            try:
                with transaction.atomic():
                    task.save(update_fields=update_fields)
            except IntegrityError as exc:
                finish_event(
                    event,
                    outcome=EventOutcome.WRONG_TASK,
                    changed=False,
                    status_before=old,
                    status_after=old,
                    note=f"{type(exc).__name__}: evolink id already used",
                )
                task = ImageTask.objects.get(pk=task_id)
                return ApplyResult(task, event, EventOutcome.WRONG_TASK, False, old, old)
        else:
            task.save(update_fields=update_fields)
        live.announce_change(task.pk)  # event streams wake up once this commits
    elif extra:  # bookkeeping only: the answer is unchanged, updated_at stays
        ImageTask.objects.filter(pk=task.pk).update(**extra)
    if task.status == Status.COMPLETED and old != Status.COMPLETED and update and update.results:
        _record_images(task, update.results, now)
    changed = outcome == EventOutcome.APPLIED
    finish_event(
        event,
        outcome=outcome,
        changed=changed,
        status_before=old,
        status_after=task.status,
        note=(event.note + "\n" + note).strip() if note else event.note,
    )
    if task.status != old:
        _after_commit(task, old, task.status)
    if task.status != old:  # what a person wants to read: the task moved on
        logger.info("task %s: %s event %s -> %s (%s)", task_id, source, old, task.status, outcome)
    elif changed or outcome not in (EventOutcome.UNCHANGED,):  # progress, stale, ...: routine
        logger.debug("task %s: %s event %s -> %s (%s)", task_id, source, old, task.status,
                     outcome)
    return ApplyResult(task, event, outcome, changed, old, task.status, list(fields))


def _record_and_apply(
    task_id: Any,
    update: Update | None,
    error: PayloadError | None,
    source: str,
    event: TaskEvent,
    then: Callable[[ApplyResult], None] | None = None,
    bookkeeping: Bookkeeping | None = None,
) -> ApplyResult:
    """Record ``event`` and apply it in one transaction (a savepoint inside a caller's).

    When anything fails, that transaction is rolled back as a whole - nothing of the
    apply is half-written - and the delivery is recorded again on its own with the
    outcome ``error`` before the exception is re-raised. Signals and download jobs are
    registered with ``on_commit`` inside it, so they run once, after the commit, and
    never for a rolled-back apply.
    """
    new, base_note = event.pk is None, event.note
    try:
        with transaction.atomic():
            result = _apply(task_id, update, event, source, error, bookkeeping)
            if then is not None:
                then(result)
    except Exception as exc:
        logger.exception("Applying a %s event to task %s failed", source, task_id)
        try:
            with transaction.atomic():
                if new:
                    event.pk = None  # its insert, if any, was rolled back with the apply
                finish_event(
                    event,
                    outcome=EventOutcome.ERROR,
                    changed=False,
                    status_before="",
                    status_after="",
                    note=(base_note + "\n" + f"{type(exc).__name__}: {exc}").strip()[:2000],
                )
        except Exception:  # e.g. the database is gone: the caller's exception says why
            logger.exception("The failed %s event of task %s could not be recorded",
                             source, task_id)
        raise
    return result


def apply_payload(
    task: ImageTask | Any,
    payload: Any,
    *,
    source: str,
    headers: dict[str, Any] | None = None,
    remote_addr: str | None = None,
    note: str = "",
    event: TaskEvent | None = None,
    update: Update | None = None,
    then: Callable[[ApplyResult], None] | None = None,
    bookkeeping: Bookkeeping | None = None,
) -> ApplyResult:
    """Record ``payload`` as an event of ``task``, then apply it forward-only.

    ``task`` is an :class:`ImageTask` or its primary key. Returns an
    :class:`ApplyResult`; malformed payloads, payloads of another task, stale and
    duplicate payloads are recorded and reported in ``outcome``, never raised.

    The event and the apply are one transaction, committed together (or, inside a
    caller's transaction, one savepoint); when the apply fails the event is still
    recorded, with the outcome ``error``, and the exception re-raised. ``event``: the
    delivery already recorded by the caller. ``update``: ``payload`` already parsed by
    the caller (:func:`parse_payload`), so it is not parsed twice. ``then``: called with
    the result inside the same transaction, the task row still locked, for writes that
    must commit together with the apply. ``bookkeeping``: called with the locked, merged
    task and the outcome before it is saved; returns local bookkeeping fields (the
    sweep's lease-fenced schedule) written by the same UPDATE as the answer - or, when
    the answer changes nothing, by one UPDATE of their own that leaves ``updated_at``.
    """
    task_id = task.pk if isinstance(task, ImageTask) else task
    error = None
    if update is None:
        try:
            update = parse_payload(payload)
        except PayloadError as exc:
            error = exc
    if event is None:
        event = _new_event(
            task_id, source, payload, headers=headers, remote_addr=remote_addr, note=note
        )
    result = _record_and_apply(task_id, update, error, source, event, then, bookkeeping)
    if isinstance(task, ImageTask):
        _refresh_instance(task, result.task)
    return result


def apply_submit_answer(task: ImageTask, payload: Any) -> ApplyResult:
    """Apply Evolink's answer to the create this process just sent for ``task`` (a row it
    inserted ``queued`` and claimed, not accepted yet): the submit's own fast path.

    The row's state is known, so nothing is read or locked: one transaction holds one
    UPDATE guarded by that state (``status = queued``, no Evolink id), the event's insert
    (outcome ``applied``) and the change's announcement. Whenever the guard does not hold
    (something else was applied meanwhile), the answer is not a plain acceptance (final,
    malformed, no task id) or the write fails (another task already carries this Evolink
    id), the answer is applied by :func:`apply_payload` instead, which locks, merges and
    records exactly as for any other delivery.
    """
    try:
        update = parse_payload(payload)
    except PayloadError:
        return apply_payload(task, payload, source=EventSource.SUBMIT)
    if (task.status != Status.QUEUED or task.evolink_id is not None or not update.evolink_id
            or update.status in FINAL_STATUSES):
        return apply_payload(task, payload, source=EventSource.SUBMIT, update=update)
    now = timezone.now()
    work = copy.copy(task)  # ``task`` is only changed once the write is done
    work.evolink_id = update.evolink_id
    _outcome, merged = _merge(work, update, now)
    fields = ["evolink_id", *merged]
    if work.submitted_at is None:
        work.submitted_at = now
        fields.append("submitted_at")
    if work.next_poll_at is None:
        work.next_poll_at = first_poll_at(work, now)
        fields.append("next_poll_at")
    work.updated_at = now
    values = {name: getattr(work, name) for name in dict.fromkeys([*fields, "updated_at"])}
    event = _new_event(task.pk, EventSource.SUBMIT, payload)
    for name, value in (("outcome", EventOutcome.APPLIED), ("changed", True),
                        ("status_before", Status.QUEUED), ("status_after", work.status)):
        setattr(event, name, value)
    connection = connections[router.db_for_write(ImageTask)]
    try:
        if connection.vendor == "postgresql":
            matched = _write_submit_answer_postgres(connection, task.pk, values, event)
            if matched:
                if live.channel_kind() == "redis":
                    live.announce_change(task.pk)
                _refresh_instance(task, work)
                if work.status != Status.QUEUED:
                    _after_commit(task, Status.QUEUED, work.status)
        else:
            with transaction.atomic():
                matched = ImageTask.objects.filter(
                    pk=task.pk, status=Status.QUEUED, evolink_id__isnull=True
                ).update(**values) == 1
                if matched:
                    event.save(force_insert=True)
                    live.announce_change(task.pk)
                    _refresh_instance(task, work)
                    if work.status != Status.QUEUED:
                        _after_commit(task, Status.QUEUED, work.status)
    except Exception:  # rolled back as a whole: the general path applies (or records) it
        logger.debug("task %s: the submit answer takes the general path", task.pk,
                     exc_info=True)
        matched = False
    if not matched:
        return apply_payload(task, payload, source=EventSource.SUBMIT, update=update)
    if work.status != Status.QUEUED:
        logger.info("task %s: %s event %s -> %s (%s)", task.pk, EventSource.SUBMIT,
                    Status.QUEUED, work.status, EventOutcome.APPLIED)
    return ApplyResult(task, event, EventOutcome.APPLIED, True, Status.QUEUED, work.status,
                       fields)


#: The statement of :func:`_write_submit_answer_postgres`, by (database, fields, notify).
_SUBMIT_SQL: dict[tuple[str, tuple[str, ...], bool], str] = {}


def _write_submit_answer_postgres(connection: Any, task_id: Any, values: dict[str, Any],
                                  event: TaskEvent) -> bool:
    """PostgreSQL: the submit answer's guarded UPDATE, its event's INSERT and the change's
    NOTIFY as one statement (one round trip; atomic on its own, a savepoint inside a
    caller's transaction). False, with nothing written, when the guard does not hold.

    The event is inserted only when the UPDATE matched (it selects from the UPDATE's
    ``RETURNING``), and the NOTIFY is sent only for an inserted event; PostgreSQL delivers
    it when the statement's transaction commits, as :func:`.live.announce_change` does.
    """
    notify = live.channel_kind() == "postgres"
    key = (connection.alias, tuple(values), notify)
    event_fields = [f for f in TaskEvent._meta.concrete_fields
                    if not f.primary_key and f.attname != "task_id"]
    task_fields = {f.name: f for f in ImageTask._meta.concrete_fields}
    sql = _SUBMIT_SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        meta = ImageTask._meta
        column = {name: qn(task_fields[name].column) for name in ("status", "evolink_id")}
        sets = ", ".join(f"{qn(task_fields[name].column)} = %s" for name in values)
        columns = ", ".join(qn(f.column) for f in event_fields)
        casts = ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in event_fields)
        task_column = next(f.column for f in TaskEvent._meta.concrete_fields
                           if f.attname == "task_id")
        # Only the models' own table and column names (quoted) and types are built in;
        # every value is a parameter.
        sql = (
            f"WITH updated AS (UPDATE {qn(meta.db_table)} SET {sets} "  # noqa: S608
            f"WHERE {qn(meta.pk.column)} = %s AND {column['status']} = %s "
            f"AND {column['evolink_id']} IS NULL RETURNING {qn(meta.pk.column)} AS id), "
            f"recorded AS (INSERT INTO {qn(TaskEvent._meta.db_table)} "
            f"({qn(task_column)}, {columns}) "
            f"SELECT updated.id, {casts} FROM updated "
            f"RETURNING {qn(TaskEvent._meta.pk.column)} AS id) "
            "SELECT recorded.id" + (", pg_notify(%s, %s)::text" if notify else "")
            + " FROM recorded"
        )
        _SUBMIT_SQL[key] = sql
    params = [task_fields[name].get_db_prep_save(value, connection)
              for name, value in values.items()]
    params += [ImageTask._meta.pk.get_db_prep_value(task_id, connection), Status.QUEUED]
    params += [f.get_db_prep_save(f.pre_save(event, add=True), connection)
               for f in event_fields]
    if notify:
        params += [live.CHANNEL, str(task_id)]
    with transaction.atomic(using=connection.alias) if connection.in_atomic_block \
            else contextlib.nullcontext(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    event.pk = row[0]
    event._state.adding, event._state.db = False, connection.alias
    return True


def fail_task(
    task: ImageTask | Any,
    *,
    code: str,
    message: str,
    source: str = EventSource.SYSTEM,
    payload: Any = None,
    status: str = Status.FAILED,
) -> ApplyResult:
    """Mark ``task`` failed (or cancelled) by a local decision, through the same path.

    Does nothing to a task that is already final (recorded as stale/unchanged).
    """
    task_id = task.pk if isinstance(task, ImageTask) else task
    if payload is None:
        payload = {"status": status, "error": {"code": code, "message": message}, "local": True}
    event = _new_event(task_id, source, payload, note=message[:500])
    update = Update(status=status, error_code=code[:64], error_message=message)
    result = _record_and_apply(task_id, update, None, source, event)
    if isinstance(task, ImageTask):
        _refresh_instance(task, result.task)
    return result


def _refresh_instance(target: ImageTask, source: ImageTask) -> None:
    if target is source:
        return
    for f in ImageTask._meta.concrete_fields:
        setattr(target, f.attname, getattr(source, f.attname))


def note_callback_received(task: ImageTask) -> None:
    """Stamp that a callback arrived for ``task`` when nothing is applied (a final task's
    late delivery): bookkeeping only, the status is not touched."""
    ImageTask.objects.filter(pk=task.pk).update(callback_received_at=timezone.now())


def poll_now(task: ImageTask) -> None:
    """Make an unfinished ``task`` due for polling at once (a delivery that could not be
    applied: the poll is the safety net). A final task is left alone."""
    ImageTask.objects.filter(pk=task.pk).unfinished().update(next_poll_at=timezone.now())


def rotate_callback_token(task: ImageTask, *, source: str = EventSource.ADMIN,
                          note: str = "") -> TaskEvent:
    """Replace the callback token of ``task`` (e.g. after its URL reached an access log).

    Evolink keeps the URL it was given at submission, so the old URL simply stops working
    (its deliveries answer 404 and record nothing) and the new token is known to no one:
    the task is tracked by polling, made due at once when it is unfinished. The rotation
    is recorded as an event (the token itself never is). Bookkeeping only: the status is
    not touched.
    """
    _raw, new_hash = tokens.new_token()
    with transaction.atomic():
        event = record_event(task, source, {"action": "rotate_callback_token"},
                             note=("callback token rotated; the old callback URL now answers "
                                   "404 and the task is tracked by polling\n" + note).strip())
        ImageTask.objects.filter(pk=task.pk).update(callback_token_hash=new_hash,
                                                   updated_at=timezone.now())
        poll_now(task)
    task.callback_token_hash = new_hash
    return event
