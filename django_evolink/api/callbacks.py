"""The callback receiver: ``POST callback/<token>/`` (URL name ``evolink:callback``).

Evolink's callbacks are not signed, so the URL itself is the credential: each task
gets its own token of 256 random bits, stored only as a SHA-256 hash
(:mod:`django_evolink.tokens`). The view, in the manner of django-anymail's webhook
views, has a fixed :meth:`CallbackView.post` and keeps the authentication apart in
:class:`CallbackTokenMixin`:

1. **authenticate**: the token's hash finds the task (an indexed lookup) and is
   compared in constant time; an unknown token answers 404 and records nothing;
2. **record**: the delivery is stored as a :class:`~django_evolink.models.TaskEvent`
   (body, headers with secrets redacted, remote address) before anything is applied, so
   it survives any later failure (the view is not wrapped in ``ATOMIC_REQUESTS``): when
   the task is re-fetched, by the token lookup's own statement (on PostgreSQL the
   ``INSERT`` selects from the lookup: one round trip), committed before Evolink is
   asked, its outcome written by the transaction that applies Evolink's answer; with a
   trusted body by the write that applies it, and for a task already final by the write
   that stamps its arrival (alone, as ``error``, when that write fails), and answered
   only after that commit;
3. **check**: a body that is not a task object, or is about another task, answers 400
   and changes nothing (the event keeps its outcome). A callback that arrives before
   its task's create answer is recorded (the task has no Evolink id yet and is not
   final; the row is read again first) answers 503 with ``Retry-After`` instead, so
   that Evolink sends it again, and is kept as ``received``;
4. **apply**: by default (``TRUST_CALLBACK_BODY = False``) the body is only a hint:
   the task is fetched from Evolink and *that* answer is applied, as a second event, so
   a leaked URL cannot inject images or statuses. With ``TRUST_CALLBACK_BODY = True``
   the body itself is applied, to the task the token lookup has just read: written only
   while the row still holds what was read, with its event, in one statement on
   PostgreSQL (``apply_payload(optimistic=True)``; a row changed meanwhile takes the
   locked path). Either way the one transition function
   (:func:`~django_evolink.transitions.apply_payload`) applies it forward-only, so
   duplicates and stale deliveries answer 200 and change nothing.

When the re-fetch fails (Evolink unreachable) or applying fails, the answer is 503 so
Evolink retries the callback (up to 3 times), the delivery stays recorded and the task
is made due for polling at once, which is the safety net. Downloads of result images
are enqueued on commit (django-q2) by the transition function; nothing slow runs in
the request.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from ..core import rows, tokens
from ..core.models import EventOutcome, EventSource, ImageTask, TaskEvent
from ..core.services import body_is_trusted, fetch_and_apply
from ..core.transitions import (
    ApplyResult,
    PayloadError,
    Update,
    apply_payload,
    finish_event,
    note_callback_received,
    parse_payload,
    poll_now,
    record_event,
    refusal,
)
from ..exceptions import EvolinkError, redact

logger = logging.getLogger("django_evolink.callbacks")

#: Longest token looked up (ours are 43 characters); longer ones are refused unhashed.
MAX_TOKEN_LENGTH = 256
#: Header names (lower case) whose values are never stored.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
#: Parts of header names whose values are never stored.
SECRET_HEADER_PARTS = ("token", "key", "secret", "signature", "auth", "password", "session")
#: How much of a body that is not JSON is stored.
MAX_STORED_TEXT = 10_000
#: The answer to a callback that arrives before its task's create answer is recorded.
EARLY_DETAIL = ("The task's create answer is not recorded yet, so its Evolink id is not "
                "known; retry later.")
#: The note of that delivery's event.
EARLY_NOTE = "arrived before the create's answer was recorded; answered 503 for a retry"


def redact_headers(headers: Any) -> dict[str, str]:
    """The request headers to store: secrets replaced by ``[redacted]``."""
    clean: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in SECRET_HEADERS or any(part in lowered for part in SECRET_HEADER_PARTS):
            clean[name] = "[redacted]"
        else:
            clean[name] = redact(str(value))[:1000]
    return clean


def client_address(request: HttpRequest) -> str | None:
    """``REMOTE_ADDR`` when it is an IP address (behind a proxy: the proxy's)."""
    value = request.META.get("REMOTE_ADDR") or ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _awaits_its_id(task: ImageTask) -> bool:
    """Whether ``task`` still waits for the answer that gives it its Evolink id (it has
    none and is not final: queued, or its create is in flight)."""
    return task.evolink_id is None and not task.is_final


class CallbackTokenMixin:
    """Authenticates a callback by the per-task token in its URL."""

    def validate_request(self, request: HttpRequest, token: str,
                         record: TaskEvent | None = None) -> ImageTask:
        """The task whose callback token is ``token``, or :class:`Http404`; with
        ``record`` (the delivery, not saved yet) stored for that task by the lookup's own
        statement unless the task is final (:func:`~django_evolink.rows.find_and_record`).
        Nothing is stored for an unknown token."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Http404("unknown callback")
        digest = tokens.hash_token(token)
        if record is None:
            task = rows.task_by("callback_token_hash", digest)
        else:
            task = rows.find_and_record("callback_token_hash", digest, record)
        # The lookup already matched the hash; compared again in constant time.
        if task is None or not tokens.token_matches(token, task.callback_token_hash):
            raise Http404("unknown callback")
        return task


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(transaction.non_atomic_requests, name="dispatch")
class CallbackView(CallbackTokenMixin, View):
    """Receives Evolink's callbacks. Subclasses customise the hooks, not :meth:`post`."""

    http_method_names = ["post"]

    # -- the fixed flow ----------------------------------------------------------------
    def post(self, request: HttpRequest, token: str) -> JsonResponse:
        try:
            return self.receive(request, token)
        except Exception:
            # e.g. the database is unavailable: answer 503 so Evolink retries, and log
            # without the request path (Django's 500 log line would carry the token)
            logger.exception("A callback could not be received")
            return self.answer(503, {"detail": "The callback could not be received now."})

    def receive(self, request: HttpRequest, token: str) -> JsonResponse:
        event = self.delivery(request)
        # Re-fetch mode: the delivery is stored by the token lookup's own statement,
        # committed before Evolink is asked (no transaction is held open meanwhile, and a
        # worker killed during the fetch leaves it recorded); its outcome is written with
        # the apply of Evolink's answer. A trusted body is recorded by the write that
        # applies it, a delivery for a final task by the write that stamps its arrival
        # (nothing is fetched). When that write fails nothing of it is written and the
        # delivery is recorded as ``error``.
        try:
            task = self.validate_request(
                request, token, None if body_is_trusted(EventSource.CALLBACK) else event)
        except Http404:
            return self.answer(404, {"detail": "Unknown callback URL."})
        event.task_id = task.pk  # for the writes that store it later
        if _awaits_its_id(task):
            task.refresh_from_db()  # the create's answer may have landed since the lookup
        problem = self.check_body(task, self._parsed_body)
        if (problem is not None and problem[0] == EventOutcome.WRONG_TASK
                and _awaits_its_id(task)):
            # Evolink finished the task before its create's answer was recorded here (a
            # slow or stalled submit): the id cannot be judged yet. Answer 503 so that
            # Evolink sends the callback again, and keep the delivery as received.
            self.set_outcome(event, EventOutcome.RECEIVED, EARLY_NOTE, task.status,
                             task.status)
            response = self.answer(503, {"detail": EARLY_DETAIL})
            response["Retry-After"] = "1"
            return response
        if problem is not None:
            outcome, message = problem
            if isinstance(event.payload, dict) and event.payload.get("_too_large"):
                message = "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE bytes."
            self.set_outcome(event, outcome, message, task.status, task.status)
            return self.answer(400, {"detail": message, "outcome": outcome})
        try:
            outcome = self.apply(task, self._parsed_body, event)
            if event.pk is None:  # an overridden apply() did not record it
                finish_event(event, outcome=outcome)
        except EvolinkError as exc:
            self.after_failure(task, event, f"re-fetch failed: {exc}")
            return self.answer(
                503, {"detail": "Could not confirm the task with Evolink; retry later."}
            )
        except Exception as exc:
            logger.exception("Applying a callback delivery of task %s failed", task.pk)
            self.after_failure(task, event, f"{type(exc).__name__}: {exc}")
            return self.answer(503, {"detail": "The callback could not be applied now."})
        return self.answer(200, {"received": True, "outcome": outcome})

    def delivery(self, request: HttpRequest) -> TaskEvent:
        """The delivery's event, not saved yet and its task not known: the body as
        :meth:`parse_body` stores it (the parsed JSON kept for the check and the apply),
        the headers with secrets redacted, the remote address."""
        body, self._parsed_body = self.parse_body(request)
        return record_event(None, EventSource.CALLBACK, body,
                            headers=redact_headers(request.headers),
                            remote_addr=client_address(request), note="callback delivery",
                            defer=True)

    # -- hooks -------------------------------------------------------------------------
    def parse_body(self, request: HttpRequest) -> tuple[Any, Any]:
        """``(what to store, parsed JSON or None)``.

        A body that is not storable JSON (not UTF-8, nested too deep, ``NaN``/``Infinity``
        or numbers out of range, NUL characters or lone surrogates, which PostgreSQL
        refuses) is stored as text (NUL replaced) and treated as malformed; a body above
        Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is stored as a note only.
        """
        try:
            raw = request.body
        except RequestDataTooBig:
            return {"_unparsed_body": "", "_too_large": True}, None
        try:
            parsed = json.loads(raw.decode("utf-8"))
            stored = json.dumps(parsed, allow_nan=False, ensure_ascii=False)
            stored.encode("utf-8")  # lone surrogates ("\\ud800") raise UnicodeEncodeError
            if "\\u0000" in stored:
                raise ValueError("NUL character")
        except (UnicodeDecodeError, ValueError, RecursionError):
            text = raw.decode("utf-8", "replace")[:MAX_STORED_TEXT].replace("\x00", "\ufffd")
            return {"_unparsed_body": text}, None
        return parsed, parsed

    def check_body(self, task: ImageTask, parsed: Any) -> tuple[str, str] | None:
        """``(outcome, message)`` when the body is not a task object for ``task``.

        A task object with a status this version does not know is accepted (recorded
        as ``unknown_status``): it is Evolink's, and refusing it would only make
        Evolink send it again.
        """
        if parsed is None:
            return EventOutcome.MALFORMED, "The body is not JSON."
        try:
            update = self.parse_update(parsed)
        except PayloadError as exc:
            if exc.outcome != EventOutcome.UNKNOWN_STATUS:
                return exc.outcome, f"The body is not a task object: {exc}."
            evolink_id = parsed.get("id")
        else:
            evolink_id = update.evolink_id
        if evolink_id != task.evolink_id:
            return EventOutcome.WRONG_TASK, "The body is about another task."
        return None

    def parse_update(self, body: Any) -> Update:
        """:func:`~django_evolink.transitions.parse_payload` of ``body``, parsed once per
        request (the check, the hint and the apply share it); raises PayloadError."""
        cached = getattr(self, "_parsed", None)
        if cached is None or cached[0] is not body:
            try:
                cached = (body, parse_payload(body))
            except PayloadError as exc:
                cached = (body, exc)
            self._parsed = cached
        if isinstance(cached[1], PayloadError):
            raise cached[1]
        return cached[1]

    def apply(self, task: ImageTask, body: dict[str, Any], event: TaskEvent) -> str:
        """Apply a delivery that is a task object for ``task``; return its outcome."""
        before = task.status
        if body_is_trusted(EventSource.CALLBACK):
            try:
                update = self.parse_update(body)
            except PayloadError:
                update = None  # recorded as such by apply_payload
            result = apply_payload(task, body, source=EventSource.CALLBACK, event=event,
                                   update=update, optimistic=True)
            return result.outcome
        hint = self.classify_hint(task, body)
        if task.is_final:
            # Nothing can change a final task: no need to ask Evolink again.
            values = self.outcome_values(event, hint, "the task is already final; not "
                                         "re-fetched", before, before)
            if event.pk is None:  # not stored yet: the task's stamp writes it too
                for name, value in values.items():
                    setattr(event, name, value)
                note_callback_received(task, event)
            else:
                finish_event(event, **values)
                note_callback_received(task)
            return hint

        def record_delivery(result: ApplyResult) -> tuple[TaskEvent, dict[str, Any]]:
            # written with the apply of Evolink's answer: they commit together
            return event, self.outcome_values(
                event, hint, f"used as a hint only; verified by fetching the task "
                f"({result.outcome})", before, result.new_status)

        result = fetch_and_apply(
            task, source=EventSource.CALLBACK,
            note=f"Evolink's answer, fetched to verify callback event {event.pk}",
            finish=record_delivery, optimistic=True,
        )
        return result.outcome

    def classify_hint(self, task: ImageTask, body: dict[str, Any]) -> str:
        """What the body alone is, compared with the task: unknown status, stale, unchanged."""
        try:
            update = self.parse_update(body)
        except PayloadError as exc:
            return exc.outcome
        return refusal(task.status, update.status) or EventOutcome.UNCHANGED

    def outcome_values(self, event: TaskEvent, outcome: str, note: str, before: str,
                       after: str) -> dict[str, Any]:
        """What became of a delivery that was not applied itself, as its event's fields."""
        return {"outcome": outcome, "changed": False, "status_before": before,
                "status_after": after, "note": (event.note + "\n" + note).strip()}

    def set_outcome(self, event: TaskEvent, outcome: str, note: str, before: str,
                    after: str) -> None:
        """Store what became of a delivery that was not applied itself."""
        finish_event(event, **self.outcome_values(event, outcome, note, before, after))

    def after_failure(self, task: ImageTask, event: TaskEvent, message: str) -> None:
        """Keep the delivery, mark it failed, and make the task due for polling now."""
        if event.pk is not None and not TaskEvent.objects.filter(pk=event.pk).exists():
            event.pk = None  # a deferred event whose insert was rolled back
        finish_event(
            event, outcome=EventOutcome.ERROR,
            note=("callback delivery\n" + redact(message)).strip()[:2000],
        )
        poll_now(task)

    def answer(self, status: int, data: dict[str, Any]) -> JsonResponse:
        response = JsonResponse(data, status=status)
        if status >= 400:
            # Django would log the path, and with it the token: log without it.
            # Django's private flag (read by django.utils.log.log_response); not in the stubs.
            response._has_been_logged = True  # type: ignore[attr-defined]
            logger.warning("Callback answered %s (%s)", status, data.get("detail", ""))
        return response
