"""Benchmark 2: the poll sweep at scale.

10,000 unfinished tasks, all due once, against the emulator (in its own process)
answering each status request after 50 ms. Runs one sweep, then (every task made due
again) two concurrent sweeps. Each sweep is a worker in its own OS process
(``_sweep_worker.py``: its own interpreter, GIL and database connection, as two django-q2
qcluster workers are in production) calling ``services.poll_due_tasks()`` until nothing
is due, started together once Django is set up in every worker.

Figures: wall time; status GETs per task counted from the emulator's request log (target
1.0, and no task asked twice); SQL statements per claimed batch (must be the same for
every full batch); and the ratio of wall time to the concurrency bound
``tasks x latency / (POLL_CONCURRENCY x sweeps)`` (target <= 1.25).

    python benchmarks/bench_sweep.py            # PostgreSQL, 10,000 tasks
    python benchmarks/bench_sweep.py --quick    # 200 tasks, 10 ms, SQLite
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402
from benchmarks._emulator_proc import TASK_ID  # noqa: E402

NAME = "sweep"
DB_NAME = f"evolink_bench_sweep_{os.getpid()}"  # unique: runs may overlap


def populate(total: int) -> None:
    from django.utils import timezone

    from django_evolink.models import ImageTask, Status

    now = timezone.now()
    tasks = [
        ImageTask(
            evolink_id=TASK_ID.format(i), model="wan2.5-image-to-image", prompt="benchmark",
            image_urls=["https://example.com/in.png"], status=Status.PROCESSING, progress=0,
            submit_started_at=now - timedelta(seconds=10), submitted_at=now - timedelta(seconds=10),
            next_poll_at=now - timedelta(seconds=1),
        )
        for i in range(total)
    ]
    ImageTask.objects.bulk_create(tasks, batch_size=2000)


def make_due() -> None:
    from django.utils import timezone

    from django_evolink.models import ImageTask

    ImageTask.objects.update(next_poll_at=timezone.now() - timedelta(seconds=1),
                             lease_token=None, lease_until=None)


WORKER = Path(__file__).resolve().parent / "_sweep_worker.py"


def run_workers(sweeps: int) -> tuple[float, dict]:
    """Run ``sweeps`` sweep workers, each in its own OS process (``_sweep_worker.py``),
    started together once all have set up Django; returns (wall time, results per worker).

    The wall time runs from the start signal to the last worker's report.
    """
    procs = [subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=common.ROOT)
             for _ in range(sweeps)]
    try:
        for proc in procs:
            if not proc.stdout.readline():
                raise RuntimeError(f"sweep worker exited with {proc.wait()} before ready")
        start = time.perf_counter()
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = {}
        for i, proc in enumerate(procs):
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"sweep worker {i} exited with {proc.wait()} "
                                   "without a report")
            results[f"s{i}"] = json.loads(line)
        wall = time.perf_counter() - start
        for proc in procs:
            proc.stdin.close()
            if proc.wait(30) != 0:
                raise RuntimeError(f"sweep worker exited with {proc.returncode}")
        return wall, results
    finally:
        for proc in procs:
            common.stop_process(proc)


def per_batch(calls: list[dict], batch: int) -> dict:
    """Statements between two claims, for the full batches (the last claim finds nothing),
    over the ``poll_due_tasks()`` calls of one worker that claimed something.

    The sweep is pipelined: it claims batch N+1 (and starts its status requests) before
    it writes the answers of batch N, so the span from one claim to the next is the claim
    of batch N+1 plus the writes of batch N. The first span (the first claim alone) is
    left out; every other span of a full batch must be the same.
    """
    full, full_spans = 0, []
    for call in calls:
        marks = call["marks"]
        spans = [b - a for a, b in zip(marks, marks[1:], strict=False)]
        call_full = call["claimed"] // batch
        full += call_full
        full_spans += spans[1:call_full]
    return {"full_batches": full, "per_batch_min": min(full_spans) if full_spans else None,
            "per_batch_max": max(full_spans) if full_spans else None}


def run(tasks: int, latency: float, concurrency: int, database: str, batch: int) -> list[dict]:
    emu = common.EmulatorProcess(tasks=tasks, latency={"task": latency})
    db_url = None
    try:
        db_url = common.create_scratch_database(database, DB_NAME)
        common.setup_django(db_url, BENCH_EVOLINK_URL=emu.url,
                            BENCH_POLL_CONCURRENCY=str(concurrency),
                            BENCH_POLL_BATCH_SIZE=str(batch))
        from django.db import connection

        from django_evolink import conf
        from django_evolink.models import ImageTask

        common.migrate()
        t0 = time.perf_counter()
        populate(tasks)
        print(f"{tasks} tasks created in {time.perf_counter() - t0:.1f} s "
              f"({connection.vendor}); emulator latency {latency * 1000:.0f} ms, "
              f"POLL_CONCURRENCY={conf.get('POLL_CONCURRENCY')}, batch {batch}", flush=True)
        connection.close()

        rows: list[dict] = []
        details: dict = {}
        for sweeps in (1, 2):
            make_due()
            connection.close()
            emu.clear_requests()
            wall, results = run_workers(sweeps)
            gets = emu.task_gets()
            per_task = Counter(gets)
            claimed = sum(r["counts"]["claimed"] for r in results.values())
            polled = sum(r["counts"]["polled"] for r in results.values())
            errors = sum(r["counts"]["errors"] for r in results.values())
            bound = tasks * latency / (concurrency * sweeps)
            batches = [per_batch(r["calls"], batch) for r in results.values()]
            mins = [b["per_batch_min"] for b in batches if b["per_batch_min"] is not None]
            maxs = [b["per_batch_max"] for b in batches if b["per_batch_max"] is not None]
            unpolled = ImageTask.objects.filter(poll_count=0 if sweeps == 1 else 1).count()
            label = "1 sweep" if sweeps == 1 else "2 concurrent sweeps"
            print(f"{label}: {wall:.1f} s, claimed {claimed}, polled {polled}, errors {errors}, "
                  f"GETs {len(gets)} (max {max(per_task.values()) if per_task else 0} per task), "
                  f"statements per batch {min(mins) if mins else '-'}..{max(maxs) if maxs else '-'}"
                  f", split {[r['counts']['claimed'] for r in results.values()]}", flush=True)
            gets_per_task = len(gets) / tasks
            # Disjoint claims: the workers together claimed each task once, and each task
            # was asked for once.
            once = (bool(per_task) and max(per_task.values()) == 1 and len(per_task) == tasks
                    and claimed == tasks)
            bench = f"sweep ({label})"
            rows.append(common.row(bench, "wall time", round(wall, 2), "s"))
            rows.append(common.row(bench, "status GETs per task", round(gets_per_task, 4), "",
                                   target="= 1.0", met=once and gets_per_task == 1.0))
            rows.append(common.row(
                bench, f"statements per batch of {batch}",
                max(maxs) if maxs else 0, "",
                target="constant", met=bool(mins) and min(mins) == max(maxs)))
            rows.append(common.row(bench, "wall / concurrency bound", round(wall, 2), "s",
                                   baseline=round(bound, 2), target="<= 1.25",
                                   met=wall / bound <= 1.25))
            details[label] = {"wall": wall, "bound": bound, "gets": len(gets),
                              "distinct_tasks_asked": len(per_task), "claimed": claimed,
                              "polled": polled, "errors": errors, "batches": batches,
                              "sweeps": {k: {"counts": v["counts"], "wall": v["wall"],
                                             "queries": v["queries"],
                                             "calls": len(v["calls"])}
                                         for k, v in results.items()},
                              "tasks_left_unpolled": unpolled}
        common.print_table(rows)
        common.write_result(NAME, rows, tasks=tasks, latency=latency, concurrency=concurrency,
                            batch_size=batch, database=connection.vendor, details=details)
        return rows
    finally:
        common.end_run(database, DB_NAME, emulator=emu)


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per status GET")
    parser.add_argument("--concurrency", type=int, default=8, help="POLL_CONCURRENCY")
    parser.add_argument("--batch", type=int, default=100, help="POLL_BATCH_SIZE")
    common.add_database_argument(parser)
    parser.add_argument("--quick", action="store_true", help="200 tasks, 10 ms, SQLite")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.latency, args.batch = 200, 0.01, 50
        args.database = args.database or "sqlite"
    database = common.pick_database(args.database)
    run(args.tasks, args.latency, args.concurrency, database, args.batch)


if __name__ == "__main__":
    main()
