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

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import signals
from ..evolink.payloads import PayloadError, Update, parse_payload, storable
from . import hooks, live, rows, tokens
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
#: Another stored event's outcome written with an apply (the callback delivery a re-fetch
#: verifies): ``result -> (event, {field: value})``; called before the write, so the
#: result's own event has no primary key yet.
Finish = Callable[["ApplyResult"], rows.EventValues]

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


def _settle(task: ImageTask, source: str, outcome: str, fields: list[str], now: datetime
            ) -> tuple[str, list[str]]:
    """What every apply adds to a merge (``outcome``, ``fields``) of ``task``: a callback's
    arrival stamp, ``applied`` for any change beyond that stamp, the submission time of a
    first Evolink id, and the first poll of a task that became trackable."""
    if source == EventSource.CALLBACK and outcome in (
        EventOutcome.APPLIED, EventOutcome.UNCHANGED, EventOutcome.STALE,
    ):
        task.callback_received_at = now
        fields.append("callback_received_at")
    if not fields:
        return outcome, fields
    if outcome == EventOutcome.UNCHANGED and any(f != "callback_received_at" for f in fields):
        outcome = EventOutcome.APPLIED
    if "evolink_id" in fields and task.submitted_at is None:
        task.submitted_at = now
        fields.append("submitted_at")
    if task.status not in FINAL_STATUSES and task.next_poll_at is None and task.evolink_id:
        task.next_poll_at = first_poll_at(task, now)
        fields.append("next_poll_at")
    return outcome, fields


def _image_rows(task: ImageTask, results: list[str], now: datetime) -> list[GeneratedImage]:
    return [
        GeneratedImage(
            task=task,
            index=i,
            source_url=url,
            source_expires_at=now + RESULT_LINK_LIFETIME,
            next_download_at=now,
        )
        for i, url in enumerate(results)
    ]


def _record_images(task: ImageTask, results: list[str], now: datetime) -> None:
    GeneratedImage.objects.bulk_create(_image_rows(task, results, now), ignore_conflicts=True)


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


def _after_apply(task: ImageTask, source: str, old: str, outcome: str) -> None:
    """What follows an apply of ``task`` (status ``old`` before it): the signals of a status
    change, after commit, and its log line - INFO when the task moved on (what a person
    wants to read), DEBUG for the routine rest (progress, stale, ...), none when unchanged."""
    new = task.status
    if new != old:
        _after_commit(task, old, new)
        logger.info("task %s: %s event %s -> %s (%s)", task.pk, source, old, new, outcome)
    elif outcome != EventOutcome.UNCHANGED:
        logger.debug("task %s: %s event %s -> %s (%s)", task.pk, source, old, new, outcome)


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


def _with_finish(then: Callable[[ApplyResult], None] | None, finish: Finish | None
                 ) -> Callable[[ApplyResult], None] | None:
    """``then`` that also writes ``finish``'s event (the locked path's way of it)."""
    if finish is None:
        return then

    def both(result: ApplyResult) -> None:
        if then is not None:
            then(result)
        stored, values = finish(result)
        finish_event(stored, **values)

    return both


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
    task = rows.locked_task(task_id)
    old = task.status
    fields: list[str]
    if error is not None:
        outcome, fields = error.outcome, []
        note = str(error)
    elif update is None:
        raise TypeError("_apply needs an update or an error")
    elif _names_another_id(task, update) and not _gives_first_id(task, source):
        outcome, fields = EventOutcome.WRONG_TASK, []
        note = f"payload is for {update.evolink_id!r}, not {task.evolink_id!r}"
    else:
        outcome, fields = _merge_answer(task, update, now)
        note = ""
    outcome, fields = _settle(task, source, outcome, fields, now)
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
        live.announce_if_watched([task], now)  # event streams wake up once this commits
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
    _after_apply(task, source, old, outcome)
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


#: The columns an unlocked apply guards besides those it writes: what the merge reads.
_READ_BY_MERGE = ("updated_at", "status", "progress", "evolink_id", "next_poll_at")


def _names_another_id(task: ImageTask, update: Update) -> bool:
    """Whether ``update`` names an Evolink id that ``task`` does not carry."""
    return update.evolink_id is not None and update.evolink_id != task.evolink_id


def _gives_first_id(task: ImageTask, source: str) -> bool:
    """Whether an answer naming an Evolink id may give it to ``task``: only the answer to
    its create, and only while it has none."""
    return task.evolink_id is None and source == EventSource.SUBMIT


def _merge_answer(task: ImageTask, update: Update, now: datetime) -> tuple[str, list[str]]:
    """:func:`_merge`, after giving ``task`` the answer's Evolink id when it names one the
    task does not carry (the create's answer: the callers let no other through)."""
    if not _names_another_id(task, update):
        return _merge(task, update, now)
    task.evolink_id = update.evolink_id
    outcome, fields = _merge(task, update, now)
    return outcome, ["evolink_id", *fields]


def _apply_unlocked(task: ImageTask, update: Update, event: TaskEvent, source: str,
                    finish: Finish | None = None) -> ApplyResult | None:
    """:func:`apply_payload`'s optimistic apply (see there); None when it was not written
    and the locked path must apply it."""
    if event.pk is not None or (_names_another_id(task, update)
                                and not _gives_first_id(task, source)):
        return None  # a stored event, or another task's answer
    now = timezone.now()
    work = copy.copy(task)  # ``task`` is only changed once the write is done
    old = work.status
    # a first Evolink id that another task already carries fails the write
    outcome, fields = _settle(work, source, *_merge_answer(work, update, now), now)
    if not fields:
        return None  # nothing to write but the event: the locked path records it
    work.updated_at = now
    names = [*dict.fromkeys(fields), "updated_at"]
    values = {name: getattr(work, name) for name in names}
    guard = {name: getattr(task, name) for name in dict.fromkeys([*_READ_BY_MERGE, *names])}
    images = (_image_rows(work, update.results, now)
              if work.status == Status.COMPLETED and old != Status.COMPLETED and update.results
              else [])
    changed = outcome == EventOutcome.APPLIED
    for name, value in (("outcome", outcome), ("changed", changed), ("status_before", old),
                        ("status_after", work.status)):
        setattr(event, name, value)
    result = ApplyResult(task, event, outcome, changed, old, work.status, fields)
    try:
        written = rows.write_guarded(work, values, guard, event, images,
                                     finish=finish(result) if finish is not None else None,
                                     read_watch=live.listened())
    except Exception:  # rolled back as a whole: the locked path applies (or records) it
        logger.debug("task %s: the %s answer takes the locked path", task.pk, source,
                     exc_info=True)
        return None
    if not written:
        return None
    live.announce_if_watched([work], now)
    _refresh_instance(task, work)
    _after_apply(task, source, old, outcome)
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
    finish: Finish | None = None,
    optimistic: bool = False,
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
    ``finish``: see :data:`Finish`; that event is updated in the apply's transaction.
    ``optimistic=True``: ``task`` is an :class:`ImageTask` the caller has just read (the
    callback receiver's token lookup), and no ``then`` or ``bookkeeping`` is given: the
    answer is merged into a copy of it and written by :func:`.rows.write_guarded` - only
    while the row still holds what the merge read, with the event and any result images,
    on PostgreSQL in one statement (no lock, no second read, one round trip). Whenever
    the row changed meanwhile, or that write fails, the answer takes the usual locked
    path, which reads the row again and decides afresh.
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
    if optimistic:
        if not isinstance(task, ImageTask) or then is not None or bookkeeping is not None:
            raise TypeError("apply_payload(optimistic=True) needs the ImageTask just read, "
                            "and no then or bookkeeping")
        if update is not None:
            written = _apply_unlocked(task, update, event, source, finish)
            if written is not None:
                return written
    result = _record_and_apply(task_id, update, error, source, event,
                               _with_finish(then, finish), bookkeeping)
    if isinstance(task, ImageTask):
        _refresh_instance(task, result.task)
    return result


# ------------------------------------------------------------------------ batched apply


@dataclass
class Answer:
    """One trusted answer of a batch for :func:`apply_answers`."""

    task_id: Any
    payload: Any
    update: Update
    bookkeeping: Bookkeeping | None = None


def batchable(task: ImageTask, update: Update) -> bool:
    """May ``update`` go through :func:`apply_answers` for ``task``? (An answer about its
    own task; anything else - another task's answer, a submit answer - takes the
    one-at-a-time path, which records it as such.)"""
    return update.evolink_id is None or update.evolink_id == task.evolink_id


def apply_answers(answers: list[Answer], *, source: str) -> list[ApplyResult]:
    """Apply a batch of parsed answers (the sweep's, one per task) in ONE transaction.

    The same rules as :func:`apply_payload`, with fewer statements: every row is locked
    by one ``SELECT ... FOR UPDATE`` (in primary-key order, so two batches never
    deadlock), every event is inserted by one ``INSERT`` in the same transaction as the
    apply (recorded first: an event and its apply commit together), the tasks are written
    by one ``UPDATE`` per set of changed fields, result images by one ``INSERT``, and the
    changes announced by one ``NOTIFY`` statement. Signals are sent once per status
    change, after commit. When anything fails (:class:`BatchError`: a task vanished
    meanwhile) the batch is rolled back as a whole, nothing of it recorded, and the
    exception raised: the caller then applies every answer on its own with
    :func:`apply_payload`, which records a failing one as ``error``.
    """
    if not answers:
        return []
    with transaction.atomic():
        ids = [a.task_id for a in answers]
        locked = {t.pk: t for t in
                  ImageTask.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
        if len(ids) != len(set(ids)) or len(locked) != len(ids):
            raise BatchError(f"a task is missing or twice in a batch of {len(ids)} answers")
        now = timezone.now()
        merged = [_merge_one(locked[a.task_id], a, source, now) for a in answers]
        _write_batch(merged, answers, now)
    return [result for result, _write in merged]


def _update_rows(tasks: list[ImageTask], names: tuple[str, ...]) -> None:
    """Write ``names`` of every task in one ``UPDATE ... SET col = CASE pk WHEN ... END``
    (what ``QuerySet.bulk_update`` sends, built without its per-row ORM expressions,
    which cost more CPU than the rest of the batch together)."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    meta = ImageTask._meta
    pk_column = quote(meta.pk.column)
    by_name = {f.name: f for f in meta.concrete_fields}
    fields = [by_name[name] for name in names]
    per_row = 2 * len(fields) + 1
    limit = connection.features.max_query_params or 65_535  # None: PostgreSQL (protocol limit)
    step = max(1, min(len(tasks), (limit - 1) // per_row))
    cast = connection.vendor == "postgresql"  # an all-NULL CASE is text there
    for start in range(0, len(tasks), step):
        chunk = tasks[start:start + step]
        keys = [meta.pk.get_db_prep_value(task.pk, connection) for task in chunk]
        sets: list[str] = []
        params: list[Any] = []
        for f in fields:
            whens = " ".join(["WHEN %s THEN %s"] * len(chunk))
            for key, task in zip(keys, chunk, strict=True):
                params += [key, f.get_db_prep_save(getattr(task, f.attname), connection)]
            case = f"CASE {pk_column} {whens} END"
            if cast:
                case = f"CAST({case} AS {f.db_type(connection)})"
            sets.append(f"{quote(f.column)} = {case}")
        params += keys
        # identifiers come from the model and are quoted; every value is a parameter
        sql = (f"UPDATE {quote(meta.db_table)} SET {', '.join(sets)} "  # noqa: S608
               f"WHERE {pk_column} IN ({', '.join(['%s'] * len(chunk))})")
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


class BatchError(Exception):
    """A batch cannot be applied as one (a task vanished meanwhile, or is in it twice)."""


def _merge_one(task: ImageTask, answer: Answer, source: str, now: datetime
               ) -> tuple[ApplyResult, list[str]]:
    """Merge one answer into its locked row in memory; returns the result (its event
    built, not saved) and the fields to write."""
    old = task.status
    outcome, fields = _settle(task, source, *_merge(task, answer.update, now), now)
    extra = answer.bookkeeping(task, outcome) if answer.bookkeeping is not None else {}
    for name, value in extra.items():
        setattr(task, name, value)
    event = _new_event(task.pk, source, answer.payload)
    changed = outcome == EventOutcome.APPLIED
    event.outcome, event.changed = outcome, changed
    event.status_before, event.status_after = old, task.status
    result = ApplyResult(task, event, outcome, changed, old, task.status, list(fields))
    return result, [*dict.fromkeys([*fields, *extra])]


def _write_batch(merged: list[tuple[ApplyResult, list[str]]], answers: list[Answer],
                 now: datetime) -> None:
    """The writes of a merged batch (inside its transaction)."""
    results = [result for result, _write in merged]
    groups: dict[tuple[str, ...], list[ImageTask]] = {}
    changed: list[ImageTask] = []
    images: list[GeneratedImage] = []
    for (result, write), answer in zip(merged, answers, strict=True):
        task = result.task
        if result.changed_fields:
            task.updated_at = now
            write = [*write, "updated_at"]
            changed.append(task)
        if write:
            groups.setdefault(tuple(sorted(write)), []).append(task)
        if result.new_status == Status.COMPLETED and result.old_status != Status.COMPLETED \
                and answer.update.results:
            images.extend(_image_rows(task, answer.update.results, now))
    TaskEvent.objects.bulk_create([r.event for r in results])
    for names, tasks in groups.items():
        _update_rows(tasks, names)
    if images:
        GeneratedImage.objects.bulk_create(images, ignore_conflicts=True)
    live.announce_if_watched(changed, now)
    for result in results:
        _after_apply(result.task, result.event.source, result.old_status, result.outcome)


def apply_submit_answer(task: ImageTask, payload: Any) -> ApplyResult:
    """Apply Evolink's answer to the create this process just sent for ``task`` (a row it
    inserted ``queued`` and claimed): :func:`apply_payload` with ``optimistic=True``.

    The row's state is known, so nothing is read or locked: the answer (its first Evolink
    id included) is merged into a copy and written by :func:`.rows.write_guarded`, only
    while the row still holds that state, with its event - one statement on PostgreSQL.
    Whenever the guard does not hold (something else was applied meanwhile), the answer
    is malformed or the write fails (another task already carries this Evolink id), it
    takes the locked path, which merges and records exactly as for any other delivery.
    """
    return apply_payload(task, payload, source=EventSource.SUBMIT, optimistic=True)


def fail_task(
    task: ImageTask | Any,
    *,
    code: str,
    message: str,
    source: str = EventSource.SYSTEM,
    payload: Any = None,
    status: str = Status.FAILED,
    then: Callable[[ApplyResult], None] | None = None,
    finish: Finish | None = None,
) -> ApplyResult:
    """Mark ``task`` failed (or cancelled) by a local decision, through the same path.

    Does nothing to a task that is already final (recorded as stale/unchanged). ``then``,
    ``finish``: as for :func:`apply_payload`.
    """
    task_id = task.pk if isinstance(task, ImageTask) else task
    if payload is None:
        payload = {"status": status, "error": {"code": code, "message": message}, "local": True}
    event = _new_event(task_id, source, payload, note=message[:500])
    update = Update(status=status, error_code=code[:64], error_message=message)
    result = _record_and_apply(task_id, update, None, source, event,
                               _with_finish(then, finish))
    if isinstance(task, ImageTask):
        _refresh_instance(task, result.task)
    return result


def _refresh_instance(target: ImageTask, source: ImageTask) -> None:
    if target is source:
        return
    for f in ImageTask._meta.concrete_fields:
        setattr(target, f.attname, getattr(source, f.attname))


def note_callback_received(task: ImageTask, event: TaskEvent | None = None) -> None:
    """Stamp that a callback arrived for ``task`` when nothing is applied (a final task's
    late delivery): bookkeeping only, the status is not touched. ``event``: that delivery,
    not stored yet, its outcome set: inserted by the same write (:func:`.rows.write_guarded`,
    one statement on PostgreSQL), or on its own first should the task's status have
    changed."""
    now = timezone.now()
    if event is not None:
        if rows.write_guarded(task, {"callback_received_at": now}, {"status": task.status},
                              event, read_watch=False):
            task.callback_received_at = now
            return
        finish_event(event)
    ImageTask.objects.filter(pk=task.pk).update(callback_received_at=now)


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
