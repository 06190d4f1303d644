"""The watch loop: polls watched tasks every few seconds, between the sweep's minute ticks.

django-q2 runs schedules at minute granularity, so the loop is a *self-continuing job*:

1. a viewer marks a task watched (:func:`django_evolink.core.attention.watch`); the core
   announces it and :func:`ensure_loop` starts the loop unless one is alive: the loop's
   lease is a cache key taken with ``cache.add`` (atomic on Redis, Memcached and the
   database cache), so one chain runs per site;
2. the job (:func:`run_watch_loop`) polls the due watched tasks
   (:func:`.sweep.poll_watched_tasks`: the sweep's lease-fenced claim, so one poll per task
   and interval whatever the number of loops, sweeps and viewers), sleeps until the next
   one falls due (at most ``WATCH_POLL_INTERVAL``), and repeats;
3. when nothing watched is left unfinished it drops the lease and ends; after
   ``WATCH_LOOP_SECONDS`` (kept below the cluster's ``timeout``) it renews the lease and
   enqueues its successor, so a worker is never held longer than one job.

The loop holds one worker of the cluster while tasks are watched (it sleeps most of the
time). With a per-process cache (``LocMemCache``) each process may start its own chain;
the claim still polls each task once per interval. In ``sync`` mode (tests) no loop is
started: the minute sweep and the watched interval of the poll policy apply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.utils import timezone
from django_q.conf import Conf

from .. import conf
from ..core import attention
from . import queue
from .sweep import COUNT_KEYS, next_watched_poll, poll_watched_tasks

logger = logging.getLogger("django_evolink.watch")

#: The cache key holding the loop's lease.
LOOP_KEY = "django_evolink:watch-loop"


def _cluster_conf() -> Any:
    return Conf  # django-q2's Q_CLUSTER, as read when it was first imported


def loop_seconds() -> float:
    """How long one watch job runs: ``WATCH_LOOP_SECONDS``, below the cluster's timeout."""
    seconds = float(conf.get("WATCH_LOOP_SECONDS"))
    timeout = getattr(_cluster_conf(), "TIMEOUT", None)
    if timeout:
        seconds = min(seconds, 0.8 * float(timeout))
    return max(1.0, seconds)


def _lease_seconds() -> int:
    # long enough for the successor job to be picked up from the queue
    return int(loop_seconds() + 60)


def loop_alive() -> bool:
    """True while a watch loop holds (or is handing over) its lease."""
    return cache.get(LOOP_KEY) is not None


def ensure_loop() -> bool:
    """Start the watch loop unless one is alive (or it is off). Returns True when a job
    was enqueued."""
    if not conf.get("WATCH_LOOP") or getattr(_cluster_conf(), "SYNC", False):
        return False
    if not cache.add(LOOP_KEY, "starting", timeout=_lease_seconds()):
        return False
    queue.enqueue_watch()
    return True


def run_watch_loop(
    max_seconds: float | None = None,
    *,
    sleep: Callable[[float], Any] = time.sleep,
    continue_after: bool = True,
) -> dict[str, int]:
    """Run the watch loop (see the module docstring); returns the summed poll counts and
    ``rounds``. ``max_seconds``: this job's run (default :func:`loop_seconds`);
    ``continue_after``: enqueue the successor when time is up while tasks are watched."""
    counts = dict.fromkeys((*COUNT_KEYS, "rounds"), 0)
    end = time.monotonic() + (loop_seconds() if max_seconds is None else max_seconds)
    interval = attention.watch_interval()
    while True:
        cache.set(LOOP_KEY, "running", timeout=_lease_seconds())
        now = timezone.now()
        due = next_watched_poll(now)
        if due is None:
            cache.delete(LOOP_KEY)
            # a viewer who marked a task while we were deciding found the key taken:
            # look once more, and carry on if the lease can be taken back
            if next_watched_poll(timezone.now()) is None or not cache.add(
                LOOP_KEY, "running", timeout=_lease_seconds()
            ):
                break
            continue
        wait = (due - now).total_seconds()
        if wait <= 0:
            counts["rounds"] += 1
            round_counts = poll_watched_tasks()
            for key, value in round_counts.items():
                counts[key] += value
            # nothing claimed: the due tasks are leased by a sweep; look again shortly
            wait = 0.0 if round_counts["claimed"] else interval / 2
        left = end - time.monotonic()
        if left <= 0:
            if continue_after:
                cache.set(LOOP_KEY, "handing over", timeout=_lease_seconds())
                queue.enqueue_watch()
            else:
                cache.delete(LOOP_KEY)
            break
        if wait > 0:
            sleep(min(max(wait, 0.05), interval, left))
    if counts["polled"]:
        logger.debug("watch loop: %s", counts)
    return counts
