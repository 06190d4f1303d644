"""Benchmark 1: callback ingestion under gunicorn on PostgreSQL.

gunicorn (2 workers, gthread, 4 threads each) serves ``benchmarks.settings``; a load
generator on loopback (Python threads, one ``requests.Session`` each) posts 2,000 callback
deliveries - per task two progress updates and the completion, plus 10 % duplicates, in a
shuffled order - to ``evolink:callback`` with ``TRUST_CALLBACK_BODY = True``. In the same
run and the same server it posts the same number of requests to the baseline view
(:mod:`benchmarks.baseline`: one primary-key UPDATE through DRF). Then, in a second
server with the default ``TRUST_CALLBACK_BODY = False``, the same deliveries are posted
while the tasks are re-fetched from the emulator (its own process, no added latency).

Checks: every delivery answered 200 and recorded (``TaskEvent``), every task completed
exactly once with its image row (no lost update).

CPU per delivery (issue 16): in this process, Django's test client posts trusted
deliveries (and as many baseline requests) through the whole request handler; the CPU
is this process's (``time.process_time``) plus that of the PostgreSQL backend serving
its connection (``utime + stime`` from ``/proc/<pid>/stat``), per request.

    python benchmarks/bench_callbacks.py           # 2,000 deliveries, PostgreSQL
    python benchmarks/bench_callbacks.py --quick   # 200 deliveries
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402
from benchmarks._emulator_proc import TASK_ID  # noqa: E402

NAME = "callbacks"
DB_NAME = f"evolink_bench_callbacks_{os.getpid()}"  # unique: runs may overlap
THREADS = 8  # concurrent clients of the load generator
WORKERS, WORKER_THREADS = 2, 4


def answer(evolink_id: str, status: str, progress: int) -> dict:
    body = {
        "created": 1761000000, "id": evolink_id, "model": "wan2.5-image-to-image",
        "object": "image.generation.task", "progress": progress, "status": status,
        "task_info": {"can_cancel": status in ("pending", "processing"), "estimated_time": 30},
        "type": "image",
        "usage": {"billing_rule": "per_call", "credits_reserved": 1.2, "user_group": "default"},
    }
    if status == "completed":
        body["results"] = [f"https://files.evolink.test/results/{evolink_id}/0.png"]
    return body


def make_tasks(prefix: str, count: int, evolink_ids: list[str] | None = None) -> list[tuple]:
    """``count`` pending tasks with callback tokens; returns ``[(pk, evolink_id, raw)]``."""
    from django.utils import timezone

    from django_evolink.core import tokens
    from django_evolink.models import ImageTask, Status

    now = timezone.now()
    rows, out = [], []
    for i in range(count):
        raw, digest = tokens.new_token()
        evolink_id = evolink_ids[i] if evolink_ids else f"task-unified-{prefix}-{i:06d}"
        task = ImageTask(evolink_id=evolink_id, model="wan2.5-image-to-image", prompt=prefix,
                         image_urls=["https://example.com/in.png"], status=Status.PENDING,
                         callback_token_hash=digest, submit_started_at=now, submitted_at=now,
                         next_poll_at=now + timezone.timedelta(hours=1))
        rows.append(task)
        out.append((task.pk, evolink_id, raw))
    ImageTask.objects.bulk_create(rows, batch_size=1000)
    return out


def deliveries(tasks: list[tuple], total: int, rng: random.Random) -> list[tuple[str, bytes]]:
    """Per task: progress 30, progress 70, completion; 10 % duplicates; shuffled."""
    items = []
    for _pk, evolink_id, raw in tasks:
        for status, progress in (("processing", 30), ("processing", 70), ("completed", 100)):
            items.append((f"/evolink/callback/{raw}/",
                          json.dumps(answer(evolink_id, status, progress)).encode()))
    duplicates = total - len(items)
    items += rng.sample(items, duplicates)
    rng.shuffle(items)
    return items


def load(base: str, requests_: list[tuple[str, bytes]], threads: int = THREADS) -> dict:
    """Post every ``(path, body)`` with ``threads`` clients; latencies and status codes."""
    import requests

    lock = threading.Lock()
    position = [0]
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    def client() -> None:
        session = requests.Session()
        session.trust_env = False
        headers = {"Content-Type": "application/json", "User-Agent": "Evolink-Callback/1.0"}
        mine, codes = [], {}
        while True:
            with lock:
                i = position[0]
                position[0] += 1
            if i >= len(requests_):
                break
            path, body = requests_[i]
            start = time.perf_counter()
            response = session.post(base + path, data=body, headers=headers, timeout=60)
            mine.append(time.perf_counter() - start)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
        with lock:
            latencies.extend(mine)
            for code, n in codes.items():
                statuses[code] = statuses.get(code, 0) + n

    workers = [threading.Thread(target=client) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    return {"n": len(requests_), "wall": wall, "rate": len(requests_) / wall,
            "p50_ms": common.percentile(latencies, 50) * 1000,
            "p99_ms": common.percentile(latencies, 99) * 1000, "statuses": statuses}


class Gunicorn:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = common.free_port()
        cmd = [sys.executable, "-m", "gunicorn", "benchmarks.wsgi:application",
               "--workers", str(WORKERS), "--worker-class", "gthread",
               "--threads", str(WORKER_THREADS), "--bind", f"127.0.0.1:{self.port}",
               "--log-level", "warning", "--backlog", "256"]
        full = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
                "PYTHONPATH": str(common.ROOT)}
        self.proc = subprocess.Popen(cmd, cwd=common.ROOT, env=full)
        common.wait_for_port(self.port, proc=self.proc)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        common.stop_process(self.proc, ask=self.proc.terminate, timeout=15)


def verify(tasks: list[tuple], sent: int, trusted: bool) -> dict:
    from django_evolink.models import GeneratedImage, ImageTask, TaskEvent

    pks = [t[0] for t in tasks]
    recorded = TaskEvent.objects.filter(task_id__in=pks, source="callback",
                                        note__startswith="callback delivery").count()
    result = {"sent": sent, "recorded": recorded}
    if trusted:
        result["completed"] = ImageTask.objects.filter(pk__in=pks, status="completed",
                                                       progress=100).count()
        result["images"] = GeneratedImage.objects.filter(task_id__in=pks).count()
        result["completions_applied"] = TaskEvent.objects.filter(
            task_id__in=pks, status_after="completed", changed=True,
            status_before__in=["pending", "processing"]).count()
        result["ok"] = (recorded == sent and result["completed"] == len(pks)
                        and result["images"] == len(pks)
                        and result["completions_applied"] == len(pks))
    else:
        result["ok"] = recorded == sent
    return result


def backend_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a local process (a PostgreSQL backend), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(count: int, rng: random.Random) -> dict[str, dict[str, float]]:
    """CPU ms per request in this process and its PostgreSQL backend: trusted callback
    deliveries of ``count`` tasks (3 each + 10 %) and as many baseline requests."""
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings

    tasks, base_tasks = make_tasks("cpu", count), make_tasks("cpubase", count)
    total = round(count * 3 * 1.1)
    series = {
        "baseline": [(f"/bench/baseline/{base_tasks[i % count][0]}/",
                      json.dumps({"progress": i % 100}).encode()) for i in range(total)],
        "trusted": deliveries(tasks, total, rng),
    }
    client = Client()  # keeps its database connection between requests
    figures: dict[str, dict[str, float]] = {}
    with override_settings(EVOLINK={**settings.EVOLINK, "TRUST_CALLBACK_BODY": True}):
        for name, requests_ in series.items():
            warm = requests_[:20]
            for path, body in warm:  # imports, the connection, prepared statements
                client.post(path, body, content_type="application/json")
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            python0, database0 = time.process_time(), backend_cpu_seconds(pid)
            for path, body in requests_[20:]:
                response = client.post(path, body, content_type="application/json")
                assert response.status_code == 200, response.content[:200]
            n = len(requests_) - 20
            python_ms = (time.process_time() - python0) / n * 1000
            database_ms = (backend_cpu_seconds(pid) - database0) / n * 1000
            figures[name] = {"python_ms": python_ms, "database_ms": database_ms,
                             "total_ms": python_ms + database_ms, "requests": n}
    return figures


def rate_rows(bench: str, measured: dict, base: dict, least: float) -> list[dict]:
    """The figures of one callback run of :func:`load` against the baseline's: callbacks/s
    (target: at least ``least`` times the baseline's requests/s), p50 and p99 latency."""
    ratio = measured["rate"] / base["rate"]
    return [
        common.row(bench, "callbacks/s", round(measured["rate"], 1), "/s",
                   baseline=round(base["rate"], 1), ratio=ratio, target=f">= {least}",
                   met=ratio >= least),
        common.row(bench, "p50 latency", round(measured["p50_ms"], 1), "ms",
                   baseline=round(base["p50_ms"], 1)),
        common.row(bench, "p99 latency", round(measured["p99_ms"], 1), "ms",
                   baseline=round(base["p99_ms"], 1)),
    ]


def run(total: int, refetch: bool) -> list[dict]:
    if not common.pg_available():
        raise SystemExit("bench_callbacks needs PostgreSQL at " + common.PG_SERVER)
    rng = random.Random(7)
    per_task = 3
    count = max(1, round(total / 1.1 / per_task))
    emu = common.EmulatorProcess(tasks=count) if refetch else None
    url = common.create_pg_database(DB_NAME)
    servers: list[Gunicorn] = []
    try:
        common.setup_django(url)
        from django.db import connection

        common.migrate()
        warm = make_tasks("warm", 40)
        base_tasks = make_tasks("base", count)
        trusted_tasks = make_tasks("cb", count)
        connection.close()

        server = Gunicorn({"BENCH_DATABASE_URL": url, "BENCH_TRUST_CALLBACK_BODY": "1"})
        servers.append(server)
        warm_cb = [(f"/evolink/callback/{raw}/", json.dumps(answer(eid, "processing", 10))
                    .encode()) for _pk, eid, raw in warm]
        warm_base = [(f"/bench/baseline/{pk}/", b'{"progress": 5}') for pk, _e, _r in warm]
        load(server.base, warm_cb + warm_base)

        baseline_reqs = [(f"/bench/baseline/{base_tasks[i % count][0]}/",
                          json.dumps({"progress": i % 100}).encode()) for i in range(total)]
        trusted_reqs = deliveries(trusted_tasks, total, rng)
        base = load(server.base, baseline_reqs)
        print(f"baseline (DRF pk UPDATE): {base['rate']:.0f} req/s, p50 {base['p50_ms']:.1f} ms,"
              f" p99 {base['p99_ms']:.1f} ms, {base['statuses']}", flush=True)
        trusted = load(server.base, trusted_reqs)
        print(f"callbacks (TRUST_CALLBACK_BODY=True): {trusted['rate']:.0f} /s, "
              f"p50 {trusted['p50_ms']:.1f} ms, p99 {trusted['p99_ms']:.1f} ms, "
              f"{trusted['statuses']}", flush=True)
        server.stop()
        servers.clear()
        check = verify(trusted_tasks, total, trusted=True)
        print(f"verified: {check}", flush=True)

        bench = "callbacks, trusted body"
        rows = [
            common.row("callbacks baseline (DRF pk UPDATE)", "requests/s",
                       round(base["rate"], 1), "/s"),
            common.row("callbacks baseline (DRF pk UPDATE)", "p50 latency",
                       round(base["p50_ms"], 1), "ms"),
            common.row("callbacks baseline (DRF pk UPDATE)", "p99 latency",
                       round(base["p99_ms"], 1), "ms"),
            *rate_rows(bench, trusted, base, 0.6),
            common.row(bench, "recorded, all completed once", check["recorded"], "events",
                       baseline=total, target="all", met=check["ok"]
                       and trusted["statuses"] == {200: total}),
        ]
        details = {"baseline": base, "trusted": trusted, "trusted_check": check,
                   "tasks": count}

        cpu = cpu_per_request(min(count, 200), rng)
        for part, label in (("total_ms", "CPU per request, in-process + PostgreSQL backend"),
                            ("python_ms", "CPU per request, Python (request handler)"),
                            ("database_ms", "CPU per request, PostgreSQL backend")):
            rows.append(common.row(bench, label, round(cpu["trusted"][part], 2), "ms",
                                   baseline=round(cpu["baseline"][part], 2)))
        print(f"CPU per request (ms): {cpu}", flush=True)
        details["cpu_per_request"] = cpu
        connection.close()

        if refetch:
            from django_evolink.models import ImageTask

            ids = [TASK_ID.format(i) for i in range(count)]
            refetch_tasks = make_tasks("rf", count, evolink_ids=ids)
            # the trusted run's tasks have other evolink ids; nothing else shares these
            assert ImageTask.objects.filter(evolink_id__in=ids).count() == count
            connection.close()
            server = Gunicorn({"BENCH_DATABASE_URL": url, "BENCH_TRUST_CALLBACK_BODY": "0",
                               "BENCH_EVOLINK_URL": emu.url})
            servers.append(server)
            load(server.base, [(f"/evolink/callback/{raw}/",
                                json.dumps(answer(eid, "processing", 10)).encode())
                               for _pk, eid, raw in refetch_tasks[:20]])
            emu.clear_requests()
            refetch_reqs = deliveries(refetch_tasks, total, rng)
            before = verify(refetch_tasks, 0, trusted=False)["recorded"]
            rf = load(server.base, refetch_reqs)
            gets = len(emu.task_gets())
            server.stop()
            servers.clear()
            check_rf = verify(refetch_tasks, total + before, trusted=False)
            print(f"callbacks (re-fetch, default): {rf['rate']:.0f} /s, p50 {rf['p50_ms']:.1f} "
                  f"ms, p99 {rf['p99_ms']:.1f} ms, {rf['statuses']}, {gets} task GETs, "
                  f"{check_rf}", flush=True)
            bench = "callbacks, re-fetch (default)"
            rows += [
                *rate_rows(bench, rf, base, 0.45),
                common.row(bench, "recorded", check_rf["recorded"] - before, "events",
                           baseline=total, met=check_rf["ok"] and rf["statuses"] == {200: total}),
            ]
            details.update({"refetch": rf, "refetch_check": check_rf, "refetch_gets": gets})
        common.print_table(rows)
        common.write_result(NAME, rows, deliveries=total, server=f"gunicorn {WORKERS} workers "
                            f"gthread x{WORKER_THREADS}", clients=THREADS, details=details)
        return rows
    finally:
        for server in servers:
            server.stop()
        common.end_run("postgresql", DB_NAME, emulator=emu)


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--no-refetch", action="store_true",
                        help="skip the default re-fetch mode (emulator)")
    parser.add_argument("--quick", action="store_true", help="200 deliveries")
    args = parser.parse_args()
    if args.quick:
        args.deliveries = 200
    run(args.deliveries, refetch=not args.no_refetch)


if __name__ == "__main__":
    main()
