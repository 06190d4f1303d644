"""One sweep worker of ``bench_sweep.py``, in its own OS process (as a django-q2 qcluster
worker is in production: its own interpreter, GIL and database connection).

Started by ``bench_sweep.py`` with the benchmark's environment (``BENCH_DATABASE_URL``,
``BENCH_EVOLINK_URL``, ``BENCH_POLL_CONCURRENCY``, ``BENCH_POLL_BATCH_SIZE``). It sets up
Django with ``benchmarks.settings``, opens its database connection, prints one JSON line
``{"ready": pid}`` and waits for a line on its standard input (the start signal, so that
Django's start-up is not timed and all workers start together). Then it calls
``django_evolink.services.poll_due_tasks()`` until a call claims nothing, and prints one
JSON line: the summed counts, its own wall time, the statements it ran, and per call
the statement count at each batch claim (``marks``, for the statements-per-batch figure).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402


def main() -> None:
    common.setup_django()
    from django.db import connection

    from django_evolink import services
    from django_evolink.background import sweep

    box = [0]
    marks: list[int] = []
    original = sweep.claim_batch

    def probe(*args, **kwargs):
        marks.append(box[0])
        return original(*args, **kwargs)

    sweep.claim_batch = probe

    def wrapper(execute, sql, params, many, context):
        box[0] += 1
        return execute(sql, params, many, context)

    connection.ensure_connection()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    if not sys.stdin.readline():
        return  # the benchmark went away before the start signal
    totals: dict[str, int] = {}
    calls: list[dict] = []
    with connection.execute_wrapper(wrapper):
        start = time.perf_counter()
        while True:
            marks.clear()
            before = box[0]
            counts = services.poll_due_tasks()
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
            calls.append({"claimed": counts["claimed"],
                          "marks": [m - before for m in marks] + [box[0] - before]})
            if not counts["claimed"]:
                break
        wall = time.perf_counter() - start
    connection.close()
    print(json.dumps({"counts": totals, "wall": wall, "queries": box[0], "calls": calls}),
          flush=True)


if __name__ == "__main__":
    main()
