"""Creating, submitting and refreshing tasks (the core of the public Python API).

Every path records first and then acts: a task row exists (``queued``) before
anything is sent, and a create whose answer was lost is marked ``failed`` with the
code ``outcome_unknown`` and never resent automatically.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import conf
from ..evolink import catalogue
from ..evolink.client import get_client
from ..exceptions import (
    EvolinkAPIError,
    EvolinkError,
    EvolinkMalformedResponseError,
    EvolinkOutcomeUnknownError,
    is_unknown_task,
)
from . import attention, hooks, limits, tokens
from .models import EventOutcome, EventSource, ImageTask, Status, TaskEvent
from .transitions import ApplyResult, Finish, apply_payload, apply_submit_answer, fail_task

logger = logging.getLogger("django_evolink.services")

OUTCOME_UNKNOWN_MESSAGE = (
    "The create request was sent but its answer was lost, so Evolink may or may not "
    "have created (and billed) a task. It was not sent again: check the Evolink "
    "dashboard, then resubmit by hand if no task was made."
)


def create_task(
    *,
    prompt: str | None = None,
    image_urls: list[str] | None = None,
    n: int | None = None,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    user: Any = None,
    input_files: list[str] | None = None,
    request: Any = None,
) -> ImageTask:
    """Validate, check the spending limits, save as ``queued``, and submit (now, or by a
    worker with ASYNC_SUBMIT).

    ``model`` defaults to ``EVOLINK['DEFAULT_MODEL']``; ``params`` holds the model's other
    parameters by Evolink's names (``{"size": "16:9", "seed": 7}``). A text-to-image
    model takes no ``image_urls``. Raises
    :class:`~django_evolink.exceptions.EvolinkValidationError` before anything is saved or
    sent when the input is not allowed, and
    :class:`~django_evolink.exceptions.EvolinkLimitExceededError` (nothing saved or sent)
    when the create would pass a limit of ``EVOLINK['LIMITS']`` or of the
    ``LIMITS_POLICY``, which is given ``user`` and ``request`` (the web request, if any).
    When Evolink refuses the task it is kept as ``failed`` with Evolink's error and the
    typed exception is raised; the task is available as ``exc.task``.
    """
    cleaned = catalogue.validate_request(
        prompt=prompt, image_urls=image_urls, n=n, model=model, params=params
    )
    cleaned["n"] = cleaned["n"] or 1  # a model without n makes one image per task
    user = user if getattr(user, "is_authenticated", False) or user is None else None
    fields: dict[str, Any] = {"user": user, "input_files": list(input_files or []), **cleaned}
    raw_token = ""
    if not conf.get("ASYNC_SUBMIT"):
        # Submitted now: the row is inserted already claimed (submit_started_at set, the
        # callback token's hash stored), the same state _claim_for_submit leaves, in one
        # write before anything is sent. No other worker can claim it.
        raw_token, token_hash = tokens.new_token()
        fields.update(submit_started_at=timezone.now(), callback_token_hash=token_hash)
    bounds = limits.limits_for(user, request)
    if bounds.any:
        task = _create_within(bounds, fields, request)
    else:
        task = ImageTask.objects.create(**fields)
    if raw_token:
        _send(task, raw_token)
    else:
        transaction.on_commit(lambda: hooks.announce_submit_requested(task.pk))
    return task


def _create_within(bounds: limits.Limits, fields: dict[str, Any], request: Any) -> ImageTask:
    """Insert the task in the transaction that checks ``bounds``, or raise
    :class:`~django_evolink.exceptions.EvolinkLimitExceededError` with nothing saved.

    The check's lock is released when this transaction commits, before anything is sent.
    (``savepoint=False``: no extra statements inside a caller's transaction; a refusal is
    raised after the block, so it never marks that transaction for rollback.)
    """
    with transaction.atomic(savepoint=False):
        estimate, refusal = limits.reserve(
            user=fields["user"], model=fields["model"], n=fields["n"],
            params=fields.get("params"), limits=bounds,
        )
        if refusal is None:
            return ImageTask.objects.create(credits_estimated=estimate, **fields)
    raise limits.refuse(refusal, request=request)


def check_limits(*, user: Any = None, model: str | None = None, n: int | None = None,
                 params: dict[str, Any] | None = None, request: Any = None) -> None:
    """Raise :class:`~django_evolink.exceptions.EvolinkLimitExceededError` now when a
    create like this would be refused, before work that must not be wasted on it (input
    images uploaded to Evolink). Only a first look: :func:`create_task` checks again, under
    its lock, and that check is the one that holds."""
    user = user if getattr(user, "is_authenticated", False) else None
    bounds = limits.limits_for(user, request)
    if not bounds.any:
        return
    with transaction.atomic():
        _estimate, refusal = limits.reserve(user=user, model=model or conf.get("DEFAULT_MODEL"),
                                            n=n or 1, params=params, limits=bounds)
    if refusal is not None:
        raise limits.refuse(refusal, request=request)


def create_like(task: ImageTask, *, user: Any = None, request: Any = None) -> ImageTask:
    """A new task with ``task``'s request (model, prompt, images, ``n`` where the model
    takes it, parameters and stored input copies), validated, checked against the limits
    and submitted as :func:`create_task` does; what the admin's resubmit runs."""
    spec = catalogue.CATALOGUE.get(task.model)
    return create_task(
        prompt=task.prompt or None,
        image_urls=list(task.image_urls or []),
        n=task.n if spec is None or spec.takes("n") else None,
        model=task.model,
        params=dict(task.params or {}),
        user=user,
        input_files=list(task.input_files or []),
        request=request,
    )


def request_fields(task: ImageTask) -> dict[str, Any]:
    """What is sent to Evolink for ``task``: only what its model takes, by Evolink's names
    (``model``, ``prompt``, ``image_urls``, ``n`` and ``params``)."""
    spec = catalogue.CATALOGUE.get(task.model)
    if spec is None:  # a model no longer in the catalogue: send what was stored
        fields: dict[str, Any] = {"model": task.model, "prompt": task.prompt or None,
                                  "image_urls": list(task.image_urls) or None, "n": task.n}
        return {**fields, "params": dict(task.params or {})}
    body = spec.request_body(prompt=task.prompt, image_urls=task.image_urls, n=task.n,
                             params=task.params)
    return {
        "model": body.pop("model"),
        "prompt": body.pop("prompt", None),
        "image_urls": body.pop("image_urls", None),
        "n": body.pop("n", None),
        "params": body,
    }


def _claim_for_submit(task: ImageTask) -> bool:
    """Mark the task as being submitted, once; False when it already was."""
    claimed = ImageTask.objects.filter(
        pk=task.pk, status=Status.QUEUED, submit_started_at__isnull=True
    ).update(submit_started_at=timezone.now())
    return claimed == 1


def submit_task(task: ImageTask) -> ImageTask:
    """Send a ``queued`` task to Evolink once and apply the answer.

    A task whose submission already started (by another worker, or an earlier try
    whose outcome is unknown) is left alone.
    """
    if not _claim_for_submit(task):
        task.refresh_from_db()
        logger.info("task %s: submission already started, not sent again", task.pk)
        return task
    raw_token, token_hash = tokens.new_token()
    ImageTask.objects.filter(pk=task.pk).update(callback_token_hash=token_hash)
    task.callback_token_hash = token_hash
    return _send(task, raw_token)


def _send(task: ImageTask, raw_token: str) -> ImageTask:
    """POST the claimed ``task`` to Evolink and apply the answer (or the refusal)."""
    try:
        answer = get_client().create_image_task(
            **request_fields(task), callback_url=tokens.callback_url(raw_token)
        )
    except EvolinkOutcomeUnknownError as exc:
        _fail_and_attach(task, exc, "outcome_unknown", OUTCOME_UNKNOWN_MESSAGE)
        raise
    except EvolinkAPIError as exc:
        _fail_and_attach(task, exc, exc.type or exc.code, exc.message, payload=exc.body)
        raise
    except EvolinkError as exc:  # connection errors, configuration errors
        _fail_and_attach(task, exc, exc.code, str(exc))
        raise
    result = apply_submit_answer(task, answer)
    if result.outcome not in (EventOutcome.APPLIED, EventOutcome.UNCHANGED):
        error = EvolinkMalformedResponseError(
            f"Evolink accepted the request but its answer could not be used ({result.outcome}).",
            status=200,
            body=answer,
        )
        _fail_and_attach(
            task, error, "outcome_unknown", OUTCOME_UNKNOWN_MESSAGE + f" (answer {result.outcome})"
        )
        raise error
    limits.learn_price(task)
    return task


def _fail_and_attach(
    task: ImageTask, exc: EvolinkError, code: str, message: str, payload: Any = None
) -> None:
    if payload is None and isinstance(exc, EvolinkAPIError):
        payload = {"error": exc.as_dict()}
    fail_task(
        task,
        code=code or "evolink_error",
        message=message,
        source=EventSource.SUBMIT,
        payload=payload if payload is not None else {"error": {"code": code, "message": message}},
    )
    exc.task = task


def watch_task(task: ImageTask | Any) -> bool:
    """Someone looks at ``task`` (or its pk; a detail request, an event stream): poll it every few
    seconds while it is unfinished (:func:`.attention.watch`). Returns whether the mark
    was written (it is refreshed at most every ``WATCH_SECONDS / 2``)."""
    return attention.watch(task)


def refresh_task(task: ImageTask, *, source: str = EventSource.REFRESH) -> ImageTask:
    """Ask Evolink for the task now (``GET /v1/tasks/{id}``), apply the answer, return it.

    A task Evolink no longer knows (404) is marked ``failed`` with the code
    ``not_found_error``. A task never accepted by Evolink is returned unchanged.
    """
    if task.evolink_id:
        fetch_and_apply(task, source=source)
    return task


def fetch_and_apply(task: ImageTask, *, source: str, note: str = "",
                    then: Callable[[ApplyResult], None] | None = None,
                    finish: Finish | None = None, optimistic: bool = False) -> ApplyResult:
    """``GET /v1/tasks/{id}`` for an accepted ``task`` and apply the answer through the
    transition path; what every "ask Evolink now" (refresh, callback re-fetch) does.

    A 404 marks the task ``failed`` with the code ``not_found_error`` (Evolink no longer
    knows it), a 400 on ``task_id`` (a malformed id) with ``invalid_request_error``; any
    other :class:`~django_evolink.exceptions.EvolinkError` is raised. ``then``, ``finish``,
    ``optimistic``: see :func:`~django_evolink.transitions.apply_payload` (``then`` runs in
    the apply's transaction; ``optimistic`` applies to the task as it was read).
    """
    if not task.evolink_id:
        raise ValueError(f"task {task.pk} was never accepted by Evolink: nothing to fetch")
    try:
        answer = get_client().get_task(task.evolink_id)
    except EvolinkAPIError as exc:
        if not is_unknown_task(exc):
            raise
        return fail_task(
            task,
            code=exc.type or "not_found_error",
            message=exc.message or "Evolink no longer knows this task (expired or unknown).",
            source=source,
            payload=exc.body if isinstance(exc.body, dict) else {"error": exc.as_dict()},
            then=then, finish=finish,
        )
    return apply_payload(task, answer, source=source, note=note, then=then, finish=finish,
                         optimistic=optimistic)


#: Sources whose recorded bodies are Evolink's own answers to this site's requests.
ANSWER_SOURCES = frozenset({EventSource.SUBMIT, EventSource.POLL, EventSource.REFRESH})


def body_is_trusted(source: str) -> bool:
    """The one trust rule for a recorded body: True when it may be applied as it is.

    Evolink's answers to this site's own requests (submit, poll, refresh) are trusted.
    A callback body is trusted only with ``TRUST_CALLBACK_BODY = True``: callbacks are not
    signed, so anyone holding a leaked callback URL can post one. Anything else (an admin
    re-apply's copy, a local decision) is not: its truth is fetched from Evolink instead.
    """
    if source in ANSWER_SOURCES:
        return True
    return source == EventSource.CALLBACK and bool(conf.get("TRUST_CALLBACK_BODY"))


def reapply_event(event: TaskEvent, *, source: str = EventSource.ADMIN) -> ApplyResult | None:
    """Apply a recorded delivery again, under the callback receiver's trust rule.

    A trusted body (:func:`body_is_trusted`) is applied as it was recorded. Any other body
    is only a hint, as it is for the receiver: the task is fetched from Evolink
    (:func:`fetch_and_apply`) and *that* answer is applied, so a forged callback stored
    through a leaked URL cannot complete a task by being re-applied. Returns ``None`` for
    an untrusted body of a task Evolink never accepted (nothing to fetch).
    """
    task = event.task
    if body_is_trusted(event.source):
        return apply_payload(task, event.payload, source=source,
                             note=f"re-applied event {event.pk}")
    if not task.evolink_id:
        return None
    return fetch_and_apply(
        task, source=source,
        note=f"re-apply of event {event.pk}: a {event.source} body is not trusted, so "
             "Evolink's answer was fetched and applied instead",
    )


__all__ = [
    "body_is_trusted",
    "check_limits",
    "create_like",
    "create_task",
    "reapply_event",
    "request_fields",
    "refresh_task",
    "submit_task",
]
