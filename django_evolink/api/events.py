"""``GET tasks/{id}/events/``: one task as Server-Sent Events.

The stream sends ``retry:`` (the reconnect delay), then an event ``task`` whose ``data``
is the task's JSON (the detail serializer) at once and after every change, each with an
``id:`` - the task's version (:func:`django_evolink.core.live.task_version`), which only
grows. A client that reconnects with ``Last-Event-ID`` gets only newer versions. A
comment line (``: keep-alive``) goes out every ``EVENTS_HEARTBEAT_SECONDS`` so proxies
keep the connection. The stream ends after the final status was sent, or after
``EVENTS_MAX_SECONDS`` (the browser's ``EventSource`` reconnects by itself); a reconnect
after the final version was seen answers 204, which tells ``EventSource`` to stop.

Under WSGI the stream is a generator (one worker thread per open stream, for at most
``EVENTS_MAX_SECONDS``); under ASGI it is an async iterator: waiting holds no thread, and
the database checks run briefly on Django's shared thread pool. Changes wake the stream
through the site's channel (:mod:`django_evolink.core.live`); while it is open the task
counts as watched, so it is polled every ``WATCH_POLL_INTERVAL``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from django.db.models import Count, Q
from django.utils import timezone
from rest_framework.renderers import BaseRenderer
from rest_framework.utils.encoders import JSONEncoder

from .. import conf
from ..background import sweep, watch
from ..core import attention, live, services
from ..core.models import ImageTask

#: Milliseconds the browser waits before reconnecting (sent as ``retry:``).
RETRY_MS = 2000


class EventStreamRenderer(BaseRenderer):
    """Lets ``Accept: text/event-stream`` through content negotiation; errors (404, 403)
    are rendered as JSON."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Mapping[str, Any] | None = None) -> bytes:
        return b"" if data is None else json.dumps(data, cls=JSONEncoder).encode()


def format_event(version: str, data: Any) -> bytes:
    """One ``task`` event (the JSON on one ``data:`` line)."""
    body = json.dumps(data, cls=JSONEncoder, ensure_ascii=False, separators=(",", ":"))
    return f"id: {version}\nevent: task\ndata: {body}\n\n".encode()


HEARTBEAT = b": keep-alive\n\n"


class TaskStream:
    """The state of one open stream; :meth:`sync_iter` and :meth:`async_iter` drive it."""

    def __init__(self, task_id: Any, serialize: Callable[[ImageTask], Any],
                 last_version: tuple[int, int] | None) -> None:
        self.task_id = task_id
        self.serialize = serialize
        self.last = last_version
        now = time.monotonic()
        self.end = now + max(0.1, float(conf.get("EVENTS_MAX_SECONDS")))
        self.heartbeat = max(0.05, float(conf.get("EVENTS_HEARTBEAT_SECONDS")))
        self.poll_interval = max(0.05, float(conf.get("EVENTS_POLL_INTERVAL")))
        self.watch_every = attention.watch_seconds() / 3
        self.next_beat = now + self.heartbeat
        self.next_watch = now + self.watch_every
        self.done = False
        self.polls_itself = False

    # ------------------------------------------------------------- database (sync)

    def _version(self) -> tuple[tuple[int, int], str, Any] | None:
        row = (
            ImageTask.objects.filter(pk=self.task_id)
            .annotate(stored=Count("images", filter=~Q(images__file="")))
            .values_list("updated_at", "stored", "status", "next_poll_at")
            .first()
        )
        if row is None:
            return None
        updated_at, stored, status, next_poll_at = row
        return (int(updated_at.timestamp() * 1_000_000), stored), status, next_poll_at

    def _poll_if_due(self, next_poll_at: Any) -> bool:
        """No watch loop runs (no cluster, or ``sync`` mode): the stream polls its own task
        when it is due, through the sweep's claim (one poll per interval however many
        streams follow the task). Returns whether it polled."""
        self.polls_itself = not watch.loop_alive()
        if self.polls_itself and next_poll_at is not None and next_poll_at <= timezone.now():
            return sweep.poll_watched_tasks(limit=1, task_ids=[self.task_id])["polled"] > 0
        return False

    def step(self) -> bytes:
        """Look at the task once: the event to send (or b""); sets ``done`` at the end."""
        now = time.monotonic()
        current = self._version()
        if current is None:  # deleted meanwhile (purge)
            self.done = True
            return b""
        version, _status, next_poll_at = current
        if _status in ("pending", "processing") and self._poll_if_due(next_poll_at):
            current = self._version()
            if current is None:
                self.done = True
                return b""
            version, _status, next_poll_at = current
        chunk = b""
        if self.last is None or version > self.last:
            task = ImageTask.objects.prefetch_related("images").filter(pk=self.task_id).first()
            if task is None:
                self.done = True
                return b""
            sent = live.parse_version(live.task_version(task))
            chunk = format_event(live.task_version(task), self.serialize(task))
            self.last = sent
            if task.is_final:
                self.done = True
                return chunk
        elif _status in ("completed", "failed", "cancelled"):
            self.done = True
            return b""
        if now >= self.next_watch:
            services.watch_task(self.task_id)
            self.next_watch = now + self.watch_every
        if now >= self.end:
            self.done = True
        return chunk

    # ------------------------------------------------------------------- timing

    def wait_time(self, channel_live: bool) -> float:
        now = time.monotonic()
        check = self.heartbeat if channel_live else self.poll_interval
        if self.polls_itself:
            check = min(check, attention.watch_interval())
        # next_watch too: the stream renews its task's watch mark on time even when the
        # heartbeat is long, so the mark never lapses while it is open (changes of
        # unwatched tasks are not announced: live.announce_if_watched)
        return max(0.0, min(self.end - now, self.next_beat - now, self.next_watch - now, check))

    def beat(self) -> bytes:
        now = time.monotonic()
        if now < self.next_beat:
            return b""
        self.next_beat = now + self.heartbeat
        return HEARTBEAT

    # -------------------------------------------------------------------- drivers

    def sync_iter(self) -> Iterator[bytes]:
        """The WSGI stream: a bounded generator."""
        sub = live.subscribe(self.task_id)
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            while True:
                chunk = self.step()
                if chunk:
                    yield chunk
                if self.done:
                    return
                sub.wait(self.wait_time(sub.live))
                beat = self.beat()
                if beat:
                    yield beat
        finally:
            sub.close()

    def _step_in_pool(self) -> bytes:
        try:
            return self.step()
        finally:
            close_old_connections()  # the pool thread's connection, as after a request

    async def async_iter(self) -> AsyncIterator[bytes]:
        """The ASGI stream: waits on the event loop, no thread held per client."""
        sub = live.subscribe(self.task_id)
        step = sync_to_async(self._step_in_pool, thread_sensitive=False)
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            while True:
                chunk = await step()
                if chunk:
                    yield chunk
                if self.done:
                    return
                await sub.wait_async(self.wait_time(sub.live))
                beat = self.beat()
                if beat:
                    yield beat
        finally:
            sub.close()
