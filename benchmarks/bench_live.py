"""Benchmark 7: live progress - how far behind Evolink a watcher is, and at what cost.

1,000 active tasks in the emulator (its own process), whose progress moves by 1 % every
2 s, no callbacks; two worker processes (``_live_worker.py``) as a two-worker qcluster:
each runs the watch loop (so two loops compete for the watched tasks: the claim must
keep it to one poll per task and interval), and one of them the minute sweep. 100 tasks
are watched: the benchmark plays their viewers (``attention.watch`` every second, as a
page's detail requests or an open event stream do), one task with ten viewers.

Figures:

- the age of the progress a watcher sees (p50/p95): sampled every 0.5 s, the time since
  the emulator reached the next value the database does not show yet (0 when current);
  target p95 <= 3 s; unwatched tasks for comparison (their backoff, the minute sweep);
- status GETs per watched task against the policy's count (run / WATCH_POLL_INTERVAL),
  within 10 %;
- GETs of the task with ten viewers against a task with one (the same);
- CPU per polled task in the workers (ms), and SQL statements per poll.

    python benchmarks/bench_live.py            # PostgreSQL when available, 75 s (two minute ticks)
    python benchmarks/bench_live.py --quick    # 100 tasks, 10 of them watched, 12 s
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

NAME = "live"
DB_NAME = f"evolink_bench_live_{os.getpid()}"
WORKER = Path(__file__).resolve().parent / "_live_worker.py"
#: Emulated (= real: speed 1) seconds of a task: 2 s pending, then 1 % every 2 s.
DURATION = 202.0
PENDING = 2.0
INTERVAL = 2.0  # WATCH_POLL_INTERVAL of the workers (_live_worker.LIVE_SETTINGS)
WARMUP = 2 * INTERVAL + 1.0  # seconds before the figures are taken


def reached_at(created: float, progress: int) -> float:
    """When the emulator's task reaches ``progress`` (Unix seconds)."""
    return created + PENDING + progress * (DURATION - PENDING) / 100


def true_progress(created: float, now: float) -> int:
    elapsed = now - created
    return max(1, min(99, int(100 * (elapsed - PENDING) / (DURATION - PENDING))))


def populate(total: int, watched: int) -> list:
    import random

    from django.utils import timezone

    from django_evolink.models import ImageTask, Status

    now = timezone.now()
    rng = random.Random(7)
    tasks = [
        ImageTask(
            evolink_id=TASK_ID.format(i), model="wan2.5-image-to-image", prompt="benchmark",
            image_urls=["https://example.com/in.png"], status=Status.PROCESSING, progress=0,
            submit_started_at=now - timedelta(seconds=10),
            submitted_at=now - timedelta(seconds=10), estimated_time=int(DURATION),
            poll_count=1,
            # unwatched: somewhere in their backoff (the next poll within 0..20 s)
            next_poll_at=now + timedelta(seconds=rng.uniform(0, 20)),
        )
        for i in range(total)
    ]
    ImageTask.objects.bulk_create(tasks, batch_size=2000)
    return list(ImageTask.objects.order_by("evolink_id").values_list("pk", flat=True)[:watched])


def start_workers(run: float) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(run), role],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=common.ROOT) for role in ("watch", "sweep")]
    for proc in procs:
        if not proc.stdout.readline():
            raise RuntimeError(f"live worker exited with {proc.wait()} before ready")
    return procs


def run(tasks: int, watched: int, seconds: float, database: str) -> list[dict]:
    emu = common.EmulatorProcess(tasks=tasks, duration=DURATION)
    procs: list[subprocess.Popen] = []
    try:
        db_url = common.create_scratch_database(database, DB_NAME)
        common.setup_django(db_url, BENCH_EVOLINK_URL=emu.url)
        from django.conf import settings
        from django.db import connection

        from benchmarks._live_worker import LIVE_SETTINGS
        from django_evolink.core import attention
        from django_evolink.models import ImageTask

        settings.EVOLINK = {**settings.EVOLINK, **LIVE_SETTINGS}
        common.migrate()
        watched_ids = populate(tasks, watched)
        one_viewer, ten_viewers = watched_ids[0], watched_ids[1]
        unwatched_sample = list(ImageTask.objects.exclude(pk__in=watched_ids)
                                .values_list("pk", flat=True)[:100])
        connection.close()
        emu.clear_requests()
        procs = start_workers(seconds)
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        begun = time.time()
        end = begun + seconds
        # warm-up: the viewers arrive, the loops make their first round; the figures are
        # those of the steady state that follows (requests counted from then on)
        start = begun + WARMUP
        sampling = False
        ages_watched: list[float] = []
        ages_unwatched: list[float] = []
        next_view = 0.0
        watch_calls, watch_statements = 0, 0
        while time.time() < end:
            now = time.time()
            if not sampling and now >= start:
                emu.clear_requests()
                start, sampling = time.time(), True
            if now >= next_view:  # the viewers: every watched task, ten for one of them
                with common.count_queries() as statements:
                    for pk in watched_ids:
                        attention.watch(pk)
                    for _ in range(9):
                        attention.watch(ten_viewers)
                watch_calls += len(watched_ids) + 9
                watch_statements += statements[0]
                next_view = now + 1.0
            if not sampling:
                time.sleep(0.2)
                continue
            for pks, ages in ((watched_ids, ages_watched),
                              (unwatched_sample, ages_unwatched)):
                seen = ImageTask.objects.filter(pk__in=pks).values_list("progress",
                                                                         flat=True)
                now = time.time()
                truth = true_progress(emu.created, now)
                for value in seen:
                    ages.append(0.0 if value >= truth
                                else max(0.0, now - reached_at(emu.created, value + 1)))
            time.sleep(0.5)
        reports = []
        for proc in procs:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"live worker exited with {proc.wait()} without a report")
            reports.append(json.loads(line))
            proc.stdin.close()
            proc.wait(30)
        elapsed = end - start
        gets = Counter(path.rsplit("/", 1)[-1] for path in emu.task_gets())
        ids = dict(ImageTask.objects.values_list("pk", "evolink_id"))
        watched_gets = [gets.get(ids[pk], 0) for pk in watched_ids]
        unwatched_ids = set(ids) - set(watched_ids)
        unwatched_gets = [gets.get(ids[pk], 0) for pk in unwatched_ids]
        policy = elapsed / INTERVAL  # one poll per interval while watched
        per_watched = sum(watched_gets) / len(watched_gets)
        polled = sum(r["counts"].get("polled", 0) for r in reports)
        cpu = sum(r["cpu"] for r in reports)
        one, ten = gets.get(ids[one_viewer], 0), gets.get(ids[ten_viewers], 0)
        double = sum(1 for pk in watched_ids
                     if gets.get(ids[pk], 0) > policy * 1.1 + 1)
        p95w, p95u = (common.percentile(ages_watched, 95), common.percentile(ages_unwatched, 95))
        print(f"{elapsed:.0f} s, {tasks} tasks ({watched} watched): GETs watched "
              f"{per_watched:.1f}/task (policy {policy:.1f}), unwatched "
              f"{sum(unwatched_gets) / max(1, len(unwatched_gets)):.2f}/task; age p95 watched "
              f"{p95w:.2f} s, unwatched {p95u:.2f} s; CPU {cpu:.1f} s for {polled} polls",
              flush=True)
        bench = f"live ({tasks} tasks, {watched} watched, 2 workers, {database})"
        rows = [
            common.row(bench, "watched: age of progress seen, p50",
                       round(common.median(ages_watched), 2), "s"),
            common.row(bench, "watched: age of progress seen, p95", round(p95w, 2), "s",
                       target="<= 3 s", met=p95w <= 3.0),
            common.row(bench, "unwatched: age of progress seen, p95", round(p95u, 2), "s"),
            common.row(bench, "watched: status GETs per task", round(per_watched, 2), "",
                       baseline=round(policy, 2), target="within 10 %",
                       met=abs(per_watched / policy - 1) <= 0.10),
            common.row(bench, "watched tasks polled more than the policy", double, "",
                       target="0", met=double == 0),
            common.row(bench, "GETs: task with 10 viewers / task with 1", ten, "",
                       baseline=one, target="same (+-1)", met=abs(ten - one) <= 1),
            common.row(bench, "unwatched: status GETs per task",
                       round(sum(unwatched_gets) / max(1, len(unwatched_gets)), 2), ""),
            common.row(bench, "worker CPU per polled task", round(1000 * cpu / max(1, polled), 2),
                       "ms"),
            common.row(bench, "viewer statements per watch() call",
                       round(watch_statements / max(1, watch_calls), 3), ""),
        ]
        common.print_table(rows)
        common.write_result(NAME, rows, tasks=tasks, watched=watched, seconds=elapsed,
                            workers=reports, gets_watched=watched_gets)
        return rows
    finally:
        common.end_run(database, DB_NAME, emulator=emu, procs=procs)


def main() -> None:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--watched", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=75.0)
    common.add_database_argument(parser)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.watched, args.seconds = 100, 10, 17.0
    database = common.pick_database(args.database)
    run(args.tasks, args.watched, args.seconds, database)


if __name__ == "__main__":
    main()
