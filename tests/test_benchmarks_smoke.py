"""The benchmark scripts run (tiny sizes, ``--quick``) so that they cannot rot.

Each script runs in a subprocess with its results written to a temporary directory; the
test checks its exit status and the figures that do not depend on the machine: every
callback recorded and every task completed once, one status request per task, the same
statement count for every sweep batch and for 10- and 100-row pages, the streamed
download below the memory target. Timing targets are not asserted (they are figures,
measured by ``make bench``, see docs/performance.md).

The callback benchmark needs PostgreSQL (its own scratch database on the server named by
``DATABASE_URL``) and gunicorn; the others run on SQLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
_DB_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = _DB_URL.startswith(("postgres://", "postgresql://"))

pytestmark = pytest.mark.slow


def run_script(script: str, tmp_path: Path, *args: str) -> list[dict]:
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if ON_POSTGRES:
        parts = urlsplit(_DB_URL)
        env["BENCH_PG_SERVER"] = f"{parts.scheme}://{parts.netloc}"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    name = script.removeprefix("bench_").removesuffix(".py")
    data = json.loads((tmp_path / f"{name}.json").read_text())
    assert data["rows"], "no figures written"
    for row in data["rows"]:
        assert set(row) >= {"benchmark", "measure", "value", "unit", "met"}
    return data["rows"]


def figure(rows: list[dict], benchmark_prefix: str, measure_prefix: str) -> dict:
    found = [r for r in rows if r["benchmark"].startswith(benchmark_prefix)
             and r["measure"].startswith(measure_prefix)]
    assert found, f"no row {benchmark_prefix!r} / {measure_prefix!r} in {rows}"
    return found[0]


@pytest.mark.postgres
@pytest.mark.skipif(not ON_POSTGRES, reason="the callback benchmark runs gunicorn on "
                    "PostgreSQL (set DATABASE_URL=postgres://...)")
def test_callbacks_benchmark(tmp_path):
    rows = run_script("bench_callbacks.py", tmp_path)
    assert figure(rows, "callbacks, trusted", "recorded")["met"] is True
    assert figure(rows, "callbacks, re-fetch", "recorded")["met"] is True
    assert figure(rows, "callbacks, trusted", "callbacks/s")["ratio"] > 0


def test_sweep_benchmark(tmp_path):
    rows = run_script("bench_sweep.py", tmp_path, "--database", "sqlite")
    for label in ("sweep (1 sweep)", "sweep (2 concurrent sweeps)"):
        assert figure(rows, label, "status GETs per task")["met"] is True
        assert figure(rows, label, "statements per batch")["met"] is True


def test_pages_benchmark(tmp_path):
    rows = run_script("bench_pages.py", tmp_path)
    assert len(rows) >= 9
    assert all(r["met"] is True for r in rows), [r for r in rows if not r["met"]]


def test_downloads_benchmark(tmp_path):
    rows = run_script("bench_downloads.py", tmp_path)
    assert figure(rows, "downloads", "peak RSS growth")["met"] is True


def test_submit_benchmark(tmp_path):
    rows = run_script("bench_submit.py", tmp_path, "--database", "sqlite")
    row = figure(rows, "submit", "create_task p50")
    assert row["value"] > 0 and row["baseline"] > 0
    # the spending limits' check: two statements more per create (issue 18)
    row = figure(rows, "submit", "SQL statements per create with limits")
    assert row["value"] - row["baseline"] == 2 and row["met"] is True
    assert figure(rows, "submit", "create_task p50 with limits")["value"] > 0


@pytest.mark.postgres
@pytest.mark.skipif(not ON_POSTGRES, reason="the floor replays PostgreSQL statements "
                    "(set DATABASE_URL=postgres://...)")
def test_submit_benchmark_measures_the_databases_floor_on_postgresql(tmp_path):
    rows = run_script("bench_submit.py", tmp_path, "--database", "postgresql")
    floor = figure(rows, "submit", "floor: the two statements alone")
    assert floor["value"] > floor["baseline"] > 0  # two durable writes cost something
    assert figure(rows, "submit", "create_task p50")["value"] > 0


def test_run_all_rejects_unknown_names():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only",
                           "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown benchmark" in done.stderr and "callbacks" in done.stderr


def test_validation_benchmark(tmp_path):
    rows = run_script("bench_validation.py", tmp_path)
    assert figure(rows, "validation", "bare DRF serializer")["value"] > 0
    per_model = [r for r in rows if r["measure"].startswith("create body ")]
    assert len(per_model) == 54 and all(r["baseline"] for r in per_model)


def test_live_benchmark(tmp_path):
    rows = run_script("bench_live.py", tmp_path, "--database", "sqlite")
    assert figure(rows, "live", "watched tasks polled more than the policy")["met"] is True
    assert figure(rows, "live", "GETs: task with 10 viewers")["met"] is True


def test_events_benchmark(tmp_path):
    rows = run_script("bench_events.py", tmp_path, "--database", "sqlite")
    assert figure(rows, "event streams", "threads added")["met"] is True
    assert figure(rows, "event streams", "events delivered")["value"] > 0
