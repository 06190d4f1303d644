"""The poll sweep: the fallback that brings every task to its final state.

One sweep (run by the recurring django-q2 schedule, ``evolink_poll`` or
``services.poll_due_tasks``):

1. looks for work with one indexed query and stops there when nothing is due;
2. settles ``queued`` tasks nobody is submitting: re-enqueues an ``ASYNC_SUBMIT`` whose
   worker never started, fails a submission that started but never got an answer as
   ``outcome_unknown`` (never resent), and times out a task nobody will ever submit;
3. claims due ``pending``/``processing`` tasks in batches of ``POLL_BATCH_SIZE`` with a
   lease (``lease_token`` + ``lease_until``) inside a short transaction -
   ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, the write lock taken by
   ``BEGIN IMMEDIATE`` on SQLite - so two sweeps never claim the same task;
4. asks Evolink about the claimed tasks outside any transaction, ``POLL_CONCURRENCY`` at a
   time (only the HTTP requests run in threads; every database write happens in the
   sweep's own thread), applies the well-formed answers of a batch together in one
   transaction (:func:`transitions.apply_answers`: one row-locking SELECT, one INSERT
   of the events, one UPDATE per set of changed fields) and anything else one by one
   (:func:`transitions.apply_payload`), times out tasks past ``TASK_TIMEOUT`` after one
   last check, and writes the next poll time back, with the answer's own UPDATE, fenced
   by the lease: a sweep whose lease expired (and was taken over by another) writes no
   schedule;
5. re-enqueues result downloads that were lost (a broker without receipts, a worker that
   died) or whose retry is due.

A worker that dies mid-sweep only delays its claimed tasks until their lease expires.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import connections, router, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext

from .. import conf
from ..core import attention, poll_policy
from ..core.models import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    EventOutcome,
    EventSource,
    GeneratedImage,
    ImageTask,
    Status,
)
from ..core.services import OUTCOME_UNKNOWN_MESSAGE
from ..core.transitions import (
    Answer,
    ApplyResult,
    apply_answers,
    apply_payload,
    batchable,
    fail_task,
)
from ..evolink.client import get_client
from ..evolink.payloads import PayloadError, Update, parse_payload
from ..exceptions import EvolinkError, EvolinkTransportError, is_unknown_task
from . import queue

logger = logging.getLogger("django_evolink.sweep")

#: Keys of the dict returned by :func:`run_sweep` (all present, 0 when nothing happened).
COUNT_KEYS = (
    "claimed",  # tasks leased by this sweep
    "polled",  # status requests answered by Evolink
    "changed",  # answers that changed a task
    "completed",  # tasks that reached `completed`
    "failed",  # tasks that ended failed/cancelled (timeouts and 404 included)
    "timed_out",  # tasks failed locally with the code `timeout`
    "not_found",  # tasks Evolink no longer knows (failed `not_found_error`)
    "errors",  # status requests that failed (HTTP error, transport error, bad answer)
    "transport_errors",  # of which: connection/timeout errors
    "skipped",  # claimed tasks released unpolled because the lease was running out
    "submits_enqueued",  # ASYNC_SUBMIT tasks handed to a worker again
    "submits_abandoned",  # submissions whose answer never came (outcome_unknown)
    "downloads_enqueued",  # tasks whose result downloads were enqueued again
)

#: Counts worth an INFO line ("sweep: ..."): a task ended here (its callback did not come)
#: or something failed. Sweeps that only claimed and polled running tasks log at DEBUG.
NOTABLE_COUNTS = ("completed", "failed", "errors", "skipped", "submits_abandoned",
                  "downloads_enqueued")

_ACTIVE = sorted(ACTIVE_STATUSES)
_FINAL = sorted(FINAL_STATUSES)


def _alias() -> str:
    return router.db_for_write(ImageTask)


def _lease() -> timedelta:
    return timedelta(seconds=float(conf.get("POLL_LEASE_SECONDS")))


def _lease_free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lte=now)


def submit_stuck_after() -> timedelta:
    """How long a started submission may go without an answer before the sweep gives it
    up as ``outcome_unknown``: the longest the client can spend on one create (every
    try's connect + read timeout and the waits between tries) plus one lease."""
    tries = int(conf.get("MAX_RETRIES")) + 1
    per_try = float(conf.get("CONNECT_TIMEOUT")) + float(conf.get("READ_TIMEOUT"))
    waits = float(conf.get("RETRY_MAX_WAIT")) * (tries - 1)
    return timedelta(seconds=tries * per_try + waits) + _lease()


def anything_due(now: datetime, *, all_tasks: bool = False) -> bool:
    """One query on the partial index of unfinished tasks: is there work for a sweep?"""
    qs = ImageTask.objects.using(_alias()).unfinished()
    if not all_tasks:
        qs = qs.filter(Q(next_poll_at__lte=now) | Q(next_poll_at__isnull=True))
    return qs.exists()


# --------------------------------------------------------------------------- claiming


def claim_batch(
    now: datetime, size: int, *, all_tasks: bool = False, exclude: set | frozenset = frozenset(),
    watched_only: bool = False, task_ids: list | None = None,
) -> tuple[uuid.UUID, list[ImageTask]]:
    """Lease up to ``size`` due tasks; returns ``(token, tasks)``.

    The rows are chosen and leased in one short transaction. On PostgreSQL rows another
    sweep is claiming are skipped (``SKIP LOCKED``); on SQLite the transaction must be
    ``IMMEDIATE`` (``OPTIONS={"transaction_mode": "IMMEDIATE"}``) so that it takes the
    write lock before reading. Either way the UPDATE re-checks the lease, so a row is
    leased to one sweep only, and the tasks returned are those carrying our token.
    ``watched_only``: only tasks someone watches (the watch loop's rounds); ``task_ids``:
    only these tasks.
    """
    alias = _alias()
    token = uuid.uuid4()
    due = Q(status__in=_ACTIVE, evolink_id__isnull=False) & _lease_free(now)
    if not all_tasks:
        due &= Q(next_poll_at__lte=now) | Q(next_poll_at__isnull=True)
    if watched_only:
        due &= attention.watched(now)
    if task_ids is not None:
        due &= Q(pk__in=list(task_ids))
    with transaction.atomic(using=alias):
        qs = ImageTask.objects.using(alias).filter(due)
        if exclude:
            qs = qs.exclude(pk__in=list(exclude))
        qs = qs.order_by(F("next_poll_at").asc(nulls_first=True), "pk")
        features = connections[alias].features
        if features.has_select_for_update and features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        rows = list(qs[:size])
        if not rows:
            return token, []
        until = now + _lease()
        leased = ImageTask.objects.using(alias).filter(due, pk__in=[r.pk for r in rows]).update(
            lease_token=token, lease_until=until
        )
        if leased == len(rows):
            # every row we read (and hold locked) is ours: no need to read them again
            for row in rows:
                row.lease_token, row.lease_until = token, until
            return token, sorted(rows, key=lambda row: row.pk)
    return token, list(ImageTask.objects.using(alias).filter(lease_token=token).order_by("pk"))


def _release(task: ImageTask, token: uuid.UUID, now: datetime, *, next_at: datetime | None,
             error: bool, polled: bool = True) -> bool:
    """Write the next poll time and drop the lease, only if we still hold it.

    A task that became final meanwhile (a callback won the race) has no lease any more:
    only its poll counter is updated. Returns True when the schedule was written.
    """
    counter = "poll_error_count" if error else "poll_count"
    updates: dict[str, Any] = {"lease_token": None, "lease_until": None}
    if polled:
        updates.update({counter: F(counter) + 1, "last_polled_at": now})
    if next_at is not None:
        updates["next_poll_at"] = next_at
    written = ImageTask.objects.using(_alias()).filter(
        pk=task.pk, lease_token=token, status__in=_ACTIVE
    ).update(**updates)
    if not written and polled:
        ImageTask.objects.using(_alias()).filter(
            pk=task.pk, status__in=_FINAL, lease_token__isnull=True
        ).update(**{counter: F(counter) + 1, "last_polled_at": now})
    return bool(written)


def _released_fields(task: ImageTask, token: uuid.UUID, now: datetime, *,
                     next_at: datetime | None, error: bool, final: bool = False
                     ) -> dict[str, Any]:
    """What :func:`_release` writes, for a row this sweep holds locked (its values read
    from the row, not ``F()``): the schedule and no lease when the lease is still ours
    and the task active; only the poll counter for a task that became final (its lease
    already cleared); nothing when the lease was lost."""
    counter = "poll_error_count" if error else "poll_count"
    polled = {counter: getattr(task, counter) + 1, "last_polled_at": now}
    if final:
        return polled if task.lease_token is None else {}
    if task.lease_token != token or task.status not in ACTIVE_STATUSES:
        return {}
    fields: dict[str, Any] = {"lease_token": None, "lease_until": None, **polled}
    if next_at is not None:
        fields["next_poll_at"] = next_at
    return fields


# ---------------------------------------------------------------------------- polling


def _fetch(evolink_id: str, stop_at: float) -> tuple[str, Any]:
    """Thread body: one status request, no database access."""
    if time.monotonic() >= stop_at:
        return "skipped", None
    try:
        return "ok", get_client().get_task(evolink_id)
    except EvolinkError as exc:
        return "error", exc
    except Exception as exc:  # a bug or an unexpected library error: count it, go on
        logger.exception("status request for %s failed unexpectedly", evolink_id)
        return "error", exc


def _count_final(task: ImageTask, counts: dict[str, int]) -> None:
    if task.status == Status.COMPLETED:
        counts["completed"] += 1
    elif task.status in FINAL_STATUSES:
        counts["failed"] += 1


def _timeout(task: ImageTask, counts: dict[str, int], why: str) -> None:
    seconds = int(float(conf.get("TASK_TIMEOUT")))
    message = gettext(
        "Evolink did not finish the task within %(seconds)d seconds (EVOLINK['TASK_TIMEOUT']); "
        "%(why)s"
    ) % {"seconds": seconds, "why": why}
    result = fail_task(task, code="timeout", message=message, source=EventSource.SYSTEM)
    if result.new_status == Status.FAILED and result.old_status != Status.FAILED:
        counts["timed_out"] += 1
        counts["failed"] += 1


def _schedule(token: uuid.UUID, now: datetime, timed_out: dict[Any, bool]
              ) -> Callable[[ImageTask, str], dict[str, Any]]:
    """The bookkeeping of one polled answer: called by the transition path on the
    locked, merged row before it is saved, so the lease-fenced schedule is written by the
    answer's own UPDATE and committed with it. Notes in ``timed_out[pk]`` whether the
    task is past its deadline (set, not appended: a batch applied again one by one
    decides again)."""

    def schedule(locked: ImageTask, outcome: str) -> dict[str, Any]:
        timed_out[locked.pk] = False
        if locked.is_final:
            return _released_fields(locked, token, now, next_at=None, error=False,
                                    final=True)
        usable = outcome in (EventOutcome.APPLIED, EventOutcome.UNCHANGED)
        past_grace = now >= poll_policy.task_deadline(locked) + poll_policy.timeout_grace()
        if poll_policy.is_past_deadline(locked, now) and (usable or past_grace):
            timed_out[locked.pk] = True
            return _released_fields(locked, token, now, next_at=None, error=False)
        return _released_fields(
            locked, token, now, error=not usable,
            next_at=poll_policy.next_poll_at(locked, now, attempt=locked.poll_count + 1))

    return schedule


def _after_apply(result: ApplyResult, timed_out: bool, counts: dict[str, int]) -> None:
    """Count what applying one polled answer did; time the task out when it is past its
    deadline."""
    task = result.task
    if result.changed:
        counts["changed"] += 1
    if task.is_final:
        if result.status_changed:
            _count_final(task, counts)
        return
    if result.outcome not in (EventOutcome.APPLIED, EventOutcome.UNCHANGED):
        counts["errors"] += 1
    if timed_out:
        _timeout(task, counts, gettext("a last status check found it still %(status)s.")
                 % {"status": task.status})


def _handle_answer(task: ImageTask, token: uuid.UUID, kind: str, value: Any,
                   counts: dict[str, int]) -> None:
    """Apply one poll result to ``task`` and write its schedule (sweep thread)."""
    now = timezone.now()
    if kind == "skipped":
        counts["skipped"] += 1
        _release(task, token, now, next_at=None, error=False, polled=False)
        return
    if kind == "ok":
        counts["polled"] += 1
        timed_out: dict[Any, bool] = {}
        result = apply_payload(task, value, source=EventSource.POLL,
                               bookkeeping=_schedule(token, now, timed_out))
        _after_apply(result, timed_out.get(result.task.pk, False), counts)
        return
    # kind == "error"
    exc: Exception = value
    if is_unknown_task(exc):  # 404, or 400 on a malformed task_id: it will never be known
        counts["polled"] += 1
        result = fail_task(
            task,
            code=getattr(exc, "type", "") or "not_found_error",
            message=exc.message
            or gettext("Evolink no longer knows this task (expired or unknown)."),
            source=EventSource.POLL,
            payload=exc.body if isinstance(exc.body, dict) else {"error": exc.as_dict()},
        )
        if result.status_changed:
            counts["not_found"] += 1
            counts["failed"] += 1
        _release(task, token, now, next_at=None, error=False)
        return
    counts["errors"] += 1
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(exc, EvolinkTransportError):
        counts["transport_errors"] += 1
    logger.warning("task %s: status check failed: %s", task.pk, exc)
    if now >= poll_policy.task_deadline(task) + poll_policy.timeout_grace():
        _release(task, token, now, next_at=None, error=True)
        _timeout(task, counts, gettext("Evolink could not be asked since (%(error)s).")
                 % {"error": type(exc).__name__})
        return
    _release(task, token, now, error=True, next_at=poll_policy.next_poll_at(
        task, now, attempt=task.poll_error_count + 1, retry_after=retry_after))


def _stop_at() -> float:
    # Stop sending requests well before the lease runs out: a task whose lease expired
    # may already be claimed (and polled) by another sweep.
    return time.monotonic() + 0.8 * _lease().total_seconds()


def _claimed_id(task: ImageTask) -> str:
    """The Evolink id of a claimed task (the claim query takes only tasks that have one)."""
    return cast(str, task.evolink_id)


def _handle(task: ImageTask, token: uuid.UUID, kind: str, value: Any,
            counts: dict[str, int]) -> None:
    try:
        _handle_answer(task, token, kind, value, counts)
    except Exception:  # one task's failure must not end the sweep; its lease expires
        counts["errors"] += 1
        logger.exception("task %s: applying the poll result failed", task.pk)


def _handle_all(answers: Iterable[tuple[ImageTask, str, Any]], token: uuid.UUID,
                counts: dict[str, int]) -> None:
    """Apply the poll results of one claimed batch: every well-formed answer about its own
    task together, in one transaction (:func:`transitions.apply_answers`); anything else
    (errors, skips, malformed answers) one by one. When the batch cannot be applied as
    one, each of its answers is applied on its own."""
    batch: list[tuple[ImageTask, Any, Update]] = []
    for task, kind, value in answers:
        if kind == "ok":
            try:
                update = parse_payload(value)
            except PayloadError:
                update = None
            if update is not None and batchable(task, update):
                batch.append((task, value, update))
                continue
        _handle(task, token, kind, value, counts)
    if len(batch) < 2:
        for task, value, _update in batch:
            _handle(task, token, "ok", value, counts)
        return
    timed_out: dict[Any, bool] = {}
    schedule = _schedule(token, timezone.now(), timed_out)
    try:
        results = apply_answers([Answer(task.pk, value, update, schedule)
                                 for task, value, update in batch], source=EventSource.POLL)
    except Exception:
        logger.exception("applying a batch of %d poll answers failed; applying them one by "
                         "one", len(batch))
        for task, value, _update in batch:
            _handle(task, token, "ok", value, counts)
        return
    for result in results:
        counts["polled"] += 1
        try:
            _after_apply(result, timed_out.get(result.task.pk, False), counts)
        except Exception:  # one task's failure must not end the sweep
            counts["errors"] += 1
            logger.exception("task %s: applying the poll result failed", result.task.pk)


def _poll_batch(tasks: list[ImageTask], token: uuid.UUID, counts: dict[str, int],
                executor: ThreadPoolExecutor | None) -> None:
    """Poll one claimed batch and apply the answers (no pipelining)."""
    stop_at = _stop_at()
    if executor is None or len(tasks) == 1:
        _handle_all(((task, *_fetch(_claimed_id(task), stop_at)) for task in tasks),
                    token, counts)
        return
    futures = {executor.submit(_fetch, _claimed_id(task), stop_at): task for task in tasks}
    _handle_all(((futures[f], *f.result()) for f in as_completed(futures)), token, counts)


def _submit_batch(
    tasks: list[ImageTask], token: uuid.UUID, executor: ThreadPoolExecutor
) -> tuple[uuid.UUID, dict[Future[tuple[str, Any]], ImageTask]]:
    stop_at = _stop_at()
    return token, {executor.submit(_fetch, _claimed_id(task), stop_at): task for task in tasks}


# ----------------------------------------------------------------- queued and downloads


def _settle_queued(now: datetime, counts: dict[str, int], cap: int) -> None:
    alias = _alias()
    timeout = timedelta(seconds=float(conf.get("TASK_TIMEOUT")))
    base = ImageTask.objects.using(alias).filter(status=Status.QUEUED)
    # A submission that started and never got an answer: the worker died mid-request.
    for task in base.filter(submit_started_at__lte=now - submit_stuck_after(),
                            evolink_id__isnull=True)[:cap]:

        result = fail_task(task, code="outcome_unknown", message=OUTCOME_UNKNOWN_MESSAGE,
                           source=EventSource.SYSTEM)
        if result.status_changed:
            counts["submits_abandoned"] += 1
            counts["failed"] += 1
    # Never submitted and too old to be worth sending now.
    for task in base.filter(submit_started_at__isnull=True, created_at__lte=now - timeout)[:cap]:
        _timeout(task, counts, gettext("it was never submitted."))
    if not conf.get("ASYNC_SUBMIT"):
        return
    # ASYNC_SUBMIT tasks whose submit job was lost: hand them to a worker again, at most
    # once per lease (the submit itself claims once, so a duplicate never resends).
    lost = list(base.filter(_lease_free(now), submit_started_at__isnull=True,
                            created_at__lte=now - _lease()).values_list("pk", flat=True)[:cap])
    if not lost:
        return

    for pk in lost:
        leased = ImageTask.objects.using(alias).filter(
            _lease_free(now), pk=pk, status=Status.QUEUED, submit_started_at__isnull=True
        ).update(lease_until=now + _lease())
        if leased:
            counts["submits_enqueued"] += 1
            queue.enqueue_submit(pk)


def _requeue_downloads(now: datetime, counts: dict[str, int], cap: int) -> None:
    """Enqueue downloads that are due: retries, and first tries whose job was lost."""
    lease = timedelta(seconds=float(conf.get("DOWNLOAD_LEASE_SECONDS")))
    task_ids = list(
        GeneratedImage.objects.using(_alias())
        .filter(file="", download_error="", next_download_at__lte=now,
                task__status=Status.COMPLETED)
        .filter(Q(download_attempts__gt=0) | Q(created_at__lte=now - lease))
        .order_by()
        .values_list("task_id", flat=True)
        .distinct()[:cap]
    )
    if not task_ids:
        return

    for task_id in task_ids:
        counts["downloads_enqueued"] += 1
        queue.enqueue_downloads(task_id)


# ------------------------------------------------------------------------------ entry


def poll_watched_tasks(limit: int | None = None,
                       task_ids: list | None = None) -> dict[str, int]:
    """Poll the due tasks someone watches (one round of the watch loop; ``task_ids``: only
    these, for an event stream that polls its own task when no loop runs); returns the
    counts of :data:`COUNT_KEYS`. Claims exactly like a sweep, so a task is polled once
    per interval whatever the number of loops, sweeps and viewers."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    cap = int(limit if limit is not None else conf.get("POLL_BATCH_SIZE"))
    token, tasks = claim_batch(timezone.now(), max(1, cap), watched_only=True,
                               task_ids=task_ids)
    counts["claimed"] = len(tasks)
    if not tasks:
        return counts
    concurrency = min(len(tasks), max(1, int(conf.get("POLL_CONCURRENCY"))))
    if concurrency == 1:
        _poll_batch(tasks, token, counts, None)
        return counts
    with ThreadPoolExecutor(concurrency, thread_name_prefix="evolink-watch") as executor:
        _poll_batch(tasks, token, counts, executor)
    return counts


def next_watched_poll(now: datetime) -> datetime | None:
    """When the next watched task falls due (None: no watched task is left to poll)."""
    rows = list(
        ImageTask.objects.using(_alias())
        .filter(attention.watched(now), status__in=_ACTIVE, evolink_id__isnull=False)
        .order_by(F("next_poll_at").asc(nulls_first=True))
        .values_list("next_poll_at", flat=True)[:1]
    )
    if not rows:
        return None
    return rows[0] or now


def watching(now: datetime) -> bool:
    """Is any task Evolink is working on watched now?"""
    return (
        ImageTask.objects.using(_alias())
        .filter(attention.watched(now), status__in=_ACTIVE, evolink_id__isnull=False)
        .exists()
    )


def run_sweep(all_tasks: bool = False, limit: int | None = None) -> dict[str, int]:
    """One sweep; see the module docstring. Returns the counts of :data:`COUNT_KEYS`.

    ``all_tasks``: poll every unfinished task once, due or not (leases still apply).
    ``limit``: poll at most this many tasks (default ``POLL_MAX_TASKS_PER_SWEEP``).
    """
    counts = dict.fromkeys(COUNT_KEYS, 0)
    cap = int(limit if limit is not None else conf.get("POLL_MAX_TASKS_PER_SWEEP"))
    batch_size = max(1, min(int(conf.get("POLL_BATCH_SIZE")), cap or 1))
    now = timezone.now()
    if cap > 0 and anything_due(now, all_tasks=all_tasks):
        _settle_queued(now, counts, cap)
        seen: set = set()
        concurrency = max(1, int(conf.get("POLL_CONCURRENCY")))
        executor = ThreadPoolExecutor(concurrency, thread_name_prefix="evolink-poll") \
            if concurrency > 1 else None
        def claim() -> tuple[uuid.UUID, list[ImageTask]]:
            if counts["claimed"] >= cap:
                return uuid.uuid4(), []
            size = min(batch_size, cap - counts["claimed"])
            token, tasks = claim_batch(timezone.now(), size, all_tasks=all_tasks, exclude=seen)
            counts["claimed"] += len(tasks)
            seen.update(t.pk for t in tasks)
            return token, tasks

        try:
            if executor is None:
                while True:
                    token, tasks = claim()
                    if not tasks:
                        break
                    _poll_batch(tasks, token, counts, executor)
            else:
                # Pipelined: while the answers of one batch are applied (in this thread),
                # the status requests of the next batch, claimed beforehand, are already
                # in flight, so the HTTP threads never wait for the database writes. At
                # most two batches are leased and in flight at a time.
                token, tasks = claim()
                current = _submit_batch(tasks, token, executor) if tasks else None
                while current is not None:
                    token, tasks = claim()
                    following = _submit_batch(tasks, token, executor) if tasks else None
                    token, futures = current
                    _handle_all(((futures[f], *f.result()) for f in as_completed(futures)),
                                token, counts)
                    current = following
        finally:
            if executor is not None:
                executor.shutdown(wait=True)
    _requeue_downloads(timezone.now(), counts, max(cap, 1))
    if any(counts.values()):
        # INFO only when the sweep did what callbacks should have (finished a task) or
        # something went wrong; claiming and polling running tasks is routine (DEBUG).
        notable = any(counts.get(key) for key in NOTABLE_COUNTS)
        logger.log(logging.INFO if notable else logging.DEBUG, "sweep: %s",
                   ", ".join(f"{k}={v}" for k, v in counts.items() if v))
    return counts
