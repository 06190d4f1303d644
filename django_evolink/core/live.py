"""Versions of what a person watching a task sees: ETags and event-stream ids.

A task's *version* changes whenever its API answer can change: every write through
:mod:`.transitions` bumps ``updated_at``, and a stored result image changes the image's
``url``. The version is ``"<updated_at in microseconds>.<images stored>"``; both parts
only grow, so versions are ordered (an event stream resumed with ``Last-Event-ID`` sends
only newer ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import connections, router, transaction

from .. import conf
from ..exceptions import EvolinkConfigurationError
from . import attention
from .models import GeneratedImage, ImageTask

try:  # optional: the "postgres" events channel
    import psycopg
except ImportError:  # pragma: no cover - psycopg2 sites use the poll channel
    psycopg = None  # type: ignore[assignment]
try:  # optional: the "redis" events channel
    import redis
except ImportError:  # pragma: no cover
    redis = None  # type: ignore[assignment]


def stored_images(task: ImageTask) -> int:
    """How many of the task's result images are stored (uses prefetched images)."""
    images: Iterable[GeneratedImage] = task.images.all()
    return sum(1 for image in images if image.file)


def task_version(task: ImageTask) -> str:
    """The ordered version of ``task``'s API answer (see the module docstring)."""
    micros = int(task.updated_at.timestamp() * 1_000_000)
    return f"{micros}.{stored_images(task)}"


def parse_version(value: str | None) -> tuple[int, int] | None:
    """``"<micros>.<stored>"`` as a comparable tuple; None for anything else."""
    if not value:
        return None
    head, _, tail = value.strip().partition(".")
    if not (head.isdigit() and tail.isdigit()) or len(head) > 20 or len(tail) > 6:
        return None
    return int(head), int(tail)


def task_etag(task: ImageTask, language: str | None = None) -> str:
    """Weak ETag of one task's answer: its id, version, status and progress, and the
    language it is written in (an error's ``hint`` is translated)."""
    suffix = f"-{language}" if language else ""
    return f'W/"{task.pk.hex}-{task_version(task)}-{task.status}-{task.progress}{suffix}"'


def list_etag(params: Mapping[str, Any], count: int, tasks: Iterable[ImageTask],
              language: str | None = None) -> str:
    """Weak ETag of one page of the task list: the query (filters, page), the total
    count, every row's version and the answer's language."""
    digest = hashlib.sha256()
    digest.update(f"language={language or ''}\n".encode())
    for key in sorted(params):
        digest.update(f"{key}={params[key]}\n".encode())
    digest.update(f"count={count}\n".encode())
    for task in tasks:
        digest.update(f"{task.pk.hex}:{task_version(task)}:{task.status}:{task.progress}\n"
                      .encode())
    return f'W/"{digest.hexdigest()[:32]}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison of ``If-None-Match`` (a list, or ``*``) with ``etag`` (RFC 9110)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in if_none_match.split(","))


# ------------------------------------------------------------------- change channel
#
# Every committed change of a watched task's answer is announced
# (:func:`announce_if_watched`, :func:`announce_change`); event streams wait for it
# (:class:`Subscription`). Where the site has a real channel the waits end at once:
# PostgreSQL ``LISTEN/NOTIFY`` on the default database, or Redis pub/sub at
# ``EVENTS_REDIS_URL``; one listener thread per process serves every stream of that
# process. Without one ("poll": SQLite, or ``EVENTS_CHANNEL = "poll"``) a stream
# looks at the database every ``EVENTS_POLL_INTERVAL`` seconds (one indexed query).

#: The PostgreSQL NOTIFY channel and the Redis pub/sub channel (payload: the task id).
CHANNEL = "django_evolink_task"

logger = logging.getLogger("django_evolink.live")


def channel_kind() -> str:
    """``"postgres"``, ``"redis"`` or ``"poll"``: how event streams wake up here."""
    kind = str(conf.get("EVENTS_CHANNEL") or "auto")
    if kind not in ("auto", "postgres", "redis", "poll"):
        raise EvolinkConfigurationError(
            f"EVOLINK['EVENTS_CHANNEL'] is {kind!r}; allowed: 'auto', 'postgres', 'redis', "
            "'poll'."
        )
    if kind != "auto":
        return kind
    if psycopg is not None and connections[router.db_for_write(ImageTask)].vendor == "postgresql":
        return "postgres"
    return "redis" if conf.get("EVENTS_REDIS_URL") else "poll"


def _redis() -> Any:
    url = conf.get("EVENTS_REDIS_URL")
    if not url:
        raise EvolinkConfigurationError(
            "EVOLINK['EVENTS_CHANNEL'] is 'redis' but EVOLINK['EVENTS_REDIS_URL'] is not set "
            "(e.g. 'redis://127.0.0.1:6379/0')."
        )
    if redis is None:
        raise EvolinkConfigurationError(
            "The 'redis' events channel needs the redis package: "
            "pip install django-evolink[redis]."
        )
    return redis.Redis.from_url(url)


def publish(task_id: Any) -> None:
    """Tell every listening stream that ``task_id`` changed (after commit)."""
    kind = channel_kind()
    try:
        if kind == "postgres":
            alias = router.db_for_write(ImageTask)
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, str(task_id)])
        elif kind == "redis":
            _redis().publish(CHANNEL, str(task_id))
    except Exception:  # a lost wake-up only delays a stream until its next check
        logger.warning("could not announce a change of task %s on %s", task_id, kind,
                       exc_info=True)


def publish_many(task_ids: list[Any]) -> None:
    """:func:`publish` for several tasks in one statement (one NOTIFY per task, one round
    trip; a Redis pipeline)."""
    if len(task_ids) == 1:
        publish(task_ids[0])
        return
    kind = channel_kind()
    try:
        if kind == "postgres":
            alias = router.db_for_write(ImageTask)
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT pg_notify(%s, id) FROM unnest(%s::text[]) AS id",
                               [CHANNEL, [str(task_id) for task_id in task_ids]])
        elif kind == "redis":
            pipe = _redis().pipeline(transaction=False)
            for task_id in task_ids:
                pipe.publish(CHANNEL, str(task_id))
            pipe.execute()
    except Exception:  # a lost wake-up only delays a stream until its next check
        logger.warning("could not announce a change of %d tasks on %s", len(task_ids), kind,
                       exc_info=True)


def listened() -> bool:
    """Can an announcement wake a stream here? Not on the ``poll`` channel, where the
    streams look at the database themselves."""
    return channel_kind() != "poll"


def announce_change(task_id: Any) -> None:
    """Announce a change of ``task_id`` once the current transaction commits, watched or
    not (a stored result image); an apply's changes go through :func:`announce_if_watched`."""
    transaction.on_commit(lambda: publish(task_id), robust=True)


def announce_if_watched(tasks: Iterable[ImageTask], now: datetime) -> list[Any]:
    """Announce the changes of those of ``tasks`` that are watched at ``now``, once the
    current transaction commits (one statement for all); returns their ids. Every apply
    path (one answer, a batch, a callback, the submit's fast path) announces through here.

    Only a watched task's change is worth announcing: an open event stream keeps its task
    watched (it renews the mark every third of ``WATCH_SECONDS``, and the view marks it
    before the stream first reads the row), so an unwatched change has no stream to wake
    and its ``NOTIFY`` is skipped. Each task's ``watched_until`` must be the row's as the
    change is written: read with the row locked (a mark written meanwhile waits for this
    transaction, and the stream then reads the committed row) or returned by the write.
    """
    ids = [task.pk for task in tasks if attention.is_watched(task, now)]
    if ids:
        transaction.on_commit(lambda: publish_many(ids), robust=True)
    return ids


class Subscription:
    """One stream's interest in one task: :meth:`wait` / :meth:`wait_async` return True
    when a change was announced since the last wait."""

    def __init__(self, hub: _Hub, key: str) -> None:
        self.hub, self.key = hub, key
        self._event = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_event: asyncio.Event | None = None

    @property
    def live(self) -> bool:
        """True when a channel listener is connected (waits may be long)."""
        return self.hub.connected

    def _notify(self) -> None:
        self._event.set()
        loop, event = self._loop, self._async_event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a change (sync streams)."""
        changed = self._event.wait(max(0.0, timeout))
        self._event.clear()
        return changed

    async def wait_async(self, timeout: float) -> bool:
        """Await up to ``timeout`` seconds for a change (async streams: no thread)."""
        if self._async_event is None:
            self._loop = asyncio.get_running_loop()
            self._async_event = asyncio.Event()
            if self._event.is_set():
                self._async_event.set()
        try:
            await asyncio.wait_for(self._async_event.wait(), max(0.0, timeout))
            changed = True
        except asyncio.TimeoutError:
            changed = False
        self._async_event.clear()
        self._event.clear()
        return changed

    def close(self) -> None:
        self.hub.unsubscribe(self)


class _Hub:
    """The process's listener: one thread, one connection, every subscription. The
    thread starts with the first stream and ends about a second after the last one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}
        self._thread: threading.Thread | None = None
        self._kind = ""
        self.connected = False

    def subscribe(self, task_id: Any) -> Subscription:
        sub = Subscription(self, str(task_id))
        kind = channel_kind()
        with self._lock:
            self._subs.setdefault(sub.key, set()).add(sub)
            if kind != "poll" and (self._thread is None or not self._thread.is_alive()):
                self._kind = kind
                self._thread = threading.Thread(target=self._run, args=(kind,), daemon=True,
                                                name="evolink-events-listener")
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.key]

    def dispatch(self, key: str) -> None:
        with self._lock:
            subs = list(self._subs.get(key, ()))
        for sub in subs:
            sub._notify()

    def _idle(self) -> bool:
        """Called by the listener between waits: with no stream left it ends (True)."""
        with self._lock:
            if self._subs:
                return False
            self._thread = None
            self.connected = False
            return True

    def _run(self, kind: str) -> None:
        while True:
            try:
                if kind == "postgres":
                    self._listen_postgres()
                else:
                    self._listen_redis()
                return  # no stream left
            except Exception:
                logger.warning("events listener (%s) lost its connection; reconnecting",
                               kind, exc_info=True)
            self.connected = False
            time.sleep(1.0)
            if self._idle():
                return

    def _listen_postgres(self) -> None:
        if psycopg is None:
            raise EvolinkConfigurationError(
                "The 'postgres' events channel needs psycopg 3: "
                "pip install django-evolink[postgres]."
            )
        alias = router.db_for_write(ImageTask)
        params = connections[alias].get_connection_params()
        keep = {"dbname", "user", "password", "host", "port", "sslmode", "sslrootcert",
                "sslcert", "sslkey", "options", "service", "passfile"}
        conninfo = {k: v for k, v in params.items() if k in keep and v not in (None, "")}
        with psycopg.connect(autocommit=True, **conninfo) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.connected = True
            while True:
                for notice in conn.notifies(timeout=1.0):
                    self.dispatch(notice.payload)
                if self._idle():
                    return

    def _listen_redis(self) -> None:
        pubsub = _redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(CHANNEL)
        self.connected = True
        try:
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message and message.get("type") == "message":
                    data = message["data"]
                    self.dispatch(data.decode() if isinstance(data, bytes) else str(data))
                elif self._idle():
                    return
        finally:
            pubsub.close()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until the listener has ended (no stream open); for tests and shutdown."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._thread is None


#: The process-wide hub.
hub = _Hub()


def subscribe(task_id: Any) -> Subscription:
    """Follow announced changes of ``task_id`` (close the subscription when done)."""
    return hub.subscribe(task_id)
