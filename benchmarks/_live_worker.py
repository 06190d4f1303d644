"""One qcluster-like worker of ``bench_live.py``, in its own OS process.

Started with the benchmark's environment (``BENCH_DATABASE_URL``, ``BENCH_EVOLINK_URL``)
and two arguments: the run's length in seconds and ``sweep`` or ``watch``. It prints
``{"ready": pid}``, waits for a line on standard input, then for the run's length runs
the watch loop (``run_watch_loop``, as the self-continuing job does; each worker keeps its
own loop, so two loops compete for the same watched tasks) and, with ``sweep``, the
recurring sweep every 60 s (the django-q2 schedule's minute tick) in between. It prints
one JSON line: the summed poll counts and its CPU seconds.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402

#: The live-update settings the benchmark measures (the library's defaults) and a real
#: poll backoff (benchmarks.settings parks tasks for an hour after a poll).
LIVE_SETTINGS = {"POLL_MIN_INTERVAL": 5.0, "POLL_MAX_INTERVAL": 300.0,
                 "POLL_LEASE_SECONDS": 120.0, "WATCH_SECONDS": 30.0,
                 "WATCH_POLL_INTERVAL": 2.0}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    run, role = float(sys.argv[1]), sys.argv[2]
    common.setup_django()
    from django.conf import settings
    from django.db import connection

    from django_evolink.background import sweep, watch

    settings.EVOLINK = {**settings.EVOLINK, **LIVE_SETTINGS}
    connection.ensure_connection()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    if not sys.stdin.readline():
        return
    totals: dict[str, float] = {}
    sweeps = 0
    cpu0 = cpu_seconds()
    end = time.monotonic() + run
    next_sweep = time.monotonic()
    while time.monotonic() < end:
        if role == "sweep" and time.monotonic() >= next_sweep:
            counts = sweep.run_sweep()
            sweeps += 1
            next_sweep += 60.0
        else:
            left = min(end, next_sweep if role == "sweep" else end) - time.monotonic()
            counts = watch.run_watch_loop(max_seconds=max(0.1, left), continue_after=False)
            if not counts["rounds"]:
                time.sleep(0.2)
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
    cpu = cpu_seconds() - cpu0
    connection.close()
    print(json.dumps({"counts": totals, "cpu": cpu, "sweeps": sweeps}), flush=True)


if __name__ == "__main__":
    main()
