"""Benchmark 8: event-stream clients under ASGI.

200 clients hold ``GET tasks/{id}/events/`` open at once against Django's ASGI
application wrapped in ``django_evolink.asgi.EventStreamRouter`` (and, for comparison,
Django's handler alone), driven in-process by an asyncio harness that speaks ASGI as a
server does (one task per client, HTTP basic auth). The cluster's watch loop is taken to
be alive (its lease is set), so the streams do not poll Evolink themselves. Every 2 s every task
moves on (``apply_payload``, as a poll does), in a thread of its own. Wake-ups come from
the site's channel (PostgreSQL ``LISTEN/NOTIFY`` when the database is PostgreSQL, else
the light database checks).

Figures, over the measured window (every client connected and sent its first event):
threads of the process (target: independent of the number of clients), RSS growth per
client, SQL statements per second (all threads), and the delay from a committed change
to its event at the client (p50/p95).

    python benchmarks/bench_events.py            # 200 clients, 20 s
    python benchmarks/bench_events.py --quick    # 20 clients, 6 s
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402

NAME = "events"
#: Threads of asyncio's default pool (sync_to_async(thread_sensitive=False) runs there).
POOL = min(32, (os.cpu_count() or 1) + 4)
DB_NAME = f"evolink_bench_events_{os.getpid()}"


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Client:
    """One event-stream client speaking ASGI to the application."""

    def __init__(self, app, path: str, auth: str) -> None:
        self.app, self.path, self.auth = app, path, auth
        self.status: int | None = None
        self.events: list[tuple[float, str]] = []  # (arrival, data)
        self.closed = asyncio.Event()
        self.first = asyncio.Event()

    async def run(self) -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": self.path, "raw_path": self.path.encode(),
            "query_string": b"", "root_path": "",
            "headers": [(b"host", b"testserver"), (b"accept", b"text/event-stream"),
                        (b"authorization", self.auth.encode())],
            "client": ("127.0.0.1", 40000), "server": ("testserver", 80),
        }
        sent_body = False

        async def receive():
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.closed.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                self.status = message["status"]
            elif message["type"] == "http.response.body":
                body = message.get("body", b"").decode()
                for block in body.split("\n\n"):
                    for line in block.split("\n"):
                        if line.startswith("data: "):
                            self.events.append((time.time(), line[6:]))
                            self.first.set()

        await self.app(scope, receive, send)


def run(clients: int, seconds: float, database: str, router: bool = True) -> list[dict]:
    try:
        db_url = common.create_scratch_database(database, DB_NAME)
        common.setup_django(db_url)
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.asgi import get_asgi_application
        from django.core.cache import cache
        from django.db import connection
        from django.db.backends import utils as db_utils

        from django_evolink.asgi import EventStreamRouter
        from django_evolink.background import watch
        from django_evolink.core import live
        from django_evolink.core.transitions import apply_payload
        from django_evolink.models import EventSource, ImageTask, Status

        settings.EVOLINK = {**settings.EVOLINK, "EVENTS_MAX_SECONDS": 3600.0}
        cache.set(watch.LOOP_KEY, "running", timeout=3600)  # the cluster polls, not streams
        common.migrate()
        user = get_user_model().objects.create_user("bench", password="pw-bench")
        ImageTask.objects.bulk_create([
            ImageTask(user=user, evolink_id=f"task-unified-1700000000-sse{i:05d}",
                      model="wan2.5-image-to-image", prompt="bench",
                      image_urls=["https://example.com/in.png"], status=Status.PROCESSING,
                      progress=1)
            for i in range(clients)
        ])
        tasks = list(ImageTask.objects.values_list("pk", "evolink_id"))
        connection.close()
        auth = "Basic " + base64.b64encode(b"bench:pw-bench").decode()
        app = EventStreamRouter(get_asgi_application()) if router else get_asgi_application()
        channel = live.channel_kind()

        statements = [0]
        original = db_utils.CursorWrapper._execute

        def counting(self, *args, **kwargs):
            statements[0] += 1
            return original(self, *args, **kwargs)

        db_utils.CursorWrapper._execute = counting
        changed_at: dict[tuple[str, int], float] = {}  # (task, progress): committed at
        stop = threading.Event()

        mover_statements = [0]

        def mover() -> None:  # every 2 s each task moves on, as a poll would apply it
            progress = 1
            try:
                with common.count_queries() as mine:
                    mover_loop(progress)
                mover_statements[0] = mine[0]
            finally:
                connection.close()

        def mover_loop(progress: int) -> None:
            while not stop.wait(2.0):
                progress += 1
                for pk, evolink_id in tasks:
                    result = apply_payload(pk, {
                        "id": evolink_id, "object": "image.generation.task",
                        "status": "processing", "progress": progress,
                        "model": "wan2.5-image-to-image", "type": "image",
                    }, source=EventSource.POLL)
                    if not result.changed:
                        raise RuntimeError(f"the change was not applied: {result.outcome} "
                                           f"{result.event.note}")
                    changed_at[(str(pk), progress)] = time.time()

        async def main() -> dict:
            streams = [Client(app, f"/evolink/tasks/{pk}/events/", auth) for pk, _ in tasks]
            # one stream first: Django's lazy start-up (URLs, DRF) is not counted per client
            runners = [asyncio.create_task(streams[0].run())]
            await asyncio.wait_for(streams[0].first.wait(), 60)
            threads0, rss0 = threading.active_count(), rss_kb()
            runners += [asyncio.create_task(c.run()) for c in streams[1:]]
            await asyncio.wait_for(asyncio.gather(*(c.first.wait() for c in streams)), 120)
            statuses = {c.status for c in streams}
            threads1, rss1 = threading.active_count(), rss_kb()
            statements[0] = 0
            window = time.time()
            thread = threading.Thread(target=mover)
            thread.start()
            await asyncio.sleep(seconds)
            stop.set()
            thread.join()
            elapsed = time.time() - window
            count = statements[0]
            threads2, rss2 = threading.active_count(), rss_kb()
            await asyncio.sleep(0.5)
            for client in streams:
                client.closed.set()
            await asyncio.wait(runners, timeout=30)
            return {"threads_before": threads0, "threads_connected": threads1,
                    "threads_end": threads2, "rss_before_kb": rss0, "rss_connected_kb": rss1,
                    "rss_end_kb": rss2, "statements": count, "elapsed": elapsed,
                    "streams": streams, "statuses": sorted(s for s in statuses if s)}

        result = asyncio.run(main())
        db_utils.CursorWrapper._execute = original
        delays = []
        for client in result["streams"]:
            for arrival, data in client.events[1:]:
                task = json.loads(data)
                committed = changed_at.get((task["id"], task["progress"]))
                if committed is not None:
                    delays.append(max(0.0, arrival - committed))
        events = sum(len(c.events) for c in result["streams"]) - clients
        per_s = result["statements"] / result["elapsed"]
        streams_per_s = (result["statements"] - mover_statements[0]) / result["elapsed"]
        growth = (result["rss_connected_kb"] - result["rss_before_kb"]) / max(1, clients - 1)
        extra_threads = result["threads_end"] - result["threads_before"]
        print(f"{clients} clients ({channel}): statuses {result['statuses']}, threads "
              f"{result['threads_before']} -> {result['threads_connected']} -> "
              f"{result['threads_end']}, RSS +{growth:.0f} kB/client, {per_s:.0f} statements/s"
              f", {events} events, delay p50 {common.median(delays) if delays else -1:.3f} s",
              flush=True)
        how = "EventStreamRouter" if router else "Django's ASGI handler alone"
        bench = f"event streams, ASGI, {how} ({clients} clients, {channel})"
        rows = [
            common.row(bench, "threads added by the other streams", extra_threads, "",
                       target=f"<= {POOL} (asyncio's pool; none per client)",
                       met=extra_threads <= POOL),
            common.row(bench, "RSS per client", round(growth, 1), "kB"),
            common.row(bench, "SQL statements per second (all threads)", round(per_s, 1), "/s"),
            common.row(bench, "of which the streams' (the changes' own excluded)",
                       round(streams_per_s, 1), "/s"),
            common.row(bench, "events delivered in the window", events, ""),
            common.row(bench, "change to event delay, p50",
                       round(common.median(delays), 3) if delays else -1, "s"),
            common.row(bench, "change to event delay, p95",
                       round(common.percentile(delays, 95), 3) if delays else -1, "s"),
        ]
        common.print_table(rows)
        common.write_result(NAME if router else f"{NAME}-plain", rows, clients=clients,
                            seconds=result["elapsed"],
                            channel=channel,
                            threads=[result["threads_before"], result["threads_connected"],
                                     result["threads_end"]])
        return rows
    finally:
        common.end_run(database, DB_NAME)


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    common.add_database_argument(parser)
    parser.add_argument("--plain", action="store_true",
                        help="Django's ASGI handler without EventStreamRouter (comparison)")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.seconds = 20, 6.0
    database = common.pick_database(args.database)
    run(args.clients, args.seconds, database, router=not args.plain)


if __name__ == "__main__":
    main()
