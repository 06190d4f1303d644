"""Shared helpers of the benchmark scripts (command line, settings, scratch databases,
subprocesses, JSON results and the table).

Every benchmark writes ``benchmarks/results/<name>.json`` with a ``rows`` list; each row
is one figure: ``{"benchmark", "measure", "value", "unit", "baseline", "ratio", "target",
"met"}`` (``baseline``/``ratio``/``target``/``met`` may be None). :func:`print_table`
prints such rows; ``run_all.py`` prints the rows of all five.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "benchmarks" / "results")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The PostgreSQL server (trust auth) the benchmarks create scratch databases on.
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432")


#: The databases a benchmark that takes ``--database`` runs on.
DATABASES = ("postgresql", "sqlite")


# ------------------------------------------------------------------ command line --
def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's parser, described by the first paragraph of its docstring ``doc``."""
    return argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])


def add_database_argument(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--database postgresql|sqlite`` (default None: see :func:`pick_database`)."""
    parser.add_argument("--database", choices=list(DATABASES), default=None, help=help)


def pick_database(requested: str | None) -> str:
    """``requested``, else PostgreSQL when its server answers, else SQLite."""
    return requested or ("postgresql" if pg_available() else "sqlite")


# ------------------------------------------------------------------------ Django --
def setup_django(database_url: str | None = None, **env: str) -> None:
    """Point ``benchmarks.settings`` at ``database_url`` (and ``BENCH_*`` env) and set up."""
    if database_url:
        os.environ["BENCH_DATABASE_URL"] = database_url
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django

    django.setup()


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


@contextmanager
def count_queries(alias: str = "default") -> Iterator[list[int]]:
    """Count SQL statements run on ``alias`` in this thread: ``with count_queries() as n:``
    then ``n[0]``. Uses ``execute_wrapper`` (no DEBUG, no stored SQL)."""
    from django.db import connections

    box = [0]

    def wrapper(execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        box[0] += 1
        return execute(sql, params, many, context)

    with connections[alias].execute_wrapper(wrapper):
        yield box


# -------------------------------------------------------------------- PostgreSQL --
def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_SERVER + "/postgres", connect_timeout=3):
            return True
    except Exception:
        return False


def create_pg_database(name: str) -> str:
    """Create (or recreate) the scratch database ``name``; returns its URL."""
    import psycopg

    with psycopg.connect(PG_SERVER + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_SERVER}/{name}"


def drop_pg_database(name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(PG_SERVER + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:  # pragma: no cover - report, do not hide the figures
        print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)


def sqlite_scratch_path(name: str) -> Path:
    """The SQLite file of the scratch database ``name``."""
    return Path(f"/tmp/django_{name}.sqlite3")


def create_scratch_database(database: str, name: str) -> str:
    """The URL of a fresh database for one run: the PostgreSQL scratch database ``name``
    (created anew) or, for ``sqlite``, an empty :func:`sqlite_scratch_path` file."""
    if database == "postgresql":
        return create_pg_database(name)
    path = sqlite_scratch_path(name)
    path.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def drop_scratch_database(database: str, name: str, *, remove_sqlite: bool = False) -> None:
    """A run's teardown: close Django's connections (once it is set up), then drop the
    PostgreSQL scratch database ``name``, or (``remove_sqlite``) delete the SQLite file."""
    from django.conf import settings
    from django.db import connections

    if settings.configured:
        connections.close_all()
    if database == "postgresql":
        drop_pg_database(name)
    elif remove_sqlite:
        sqlite_scratch_path(name).unlink(missing_ok=True)


def pg_version() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_SERVER + "/postgres", connect_timeout=3) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception:
        return None


# --------------------------------------------------------------------- processes --
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen, ask: Callable[[], None] | None = None,
                 timeout: float = 10.0) -> None:
    """Stop ``proc`` if it still runs: ``ask()`` it to end (close its stdin, terminate)
    and wait up to ``timeout`` s, then kill it; without ``ask``, kill it at once."""
    if proc.poll() is not None:
        return
    if ask is not None:
        ask()
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait()


class EmulatorProcess:
    """The emulator in a subprocess (``_emulator_proc.py``); ``.url``, ``.control(...)``."""

    def __init__(self, tasks: int = 0, latency: dict[str, float] | None = None,
                 allow_insecure_callbacks: bool = False, duration: float | None = None) -> None:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "_emulator_proc.py"),
               "--tasks", str(tasks)]
        if duration is not None:
            cmd += ["--duration", str(duration)]
        for endpoint, seconds in (latency or {}).items():
            cmd += ["--latency", f"{endpoint}={seconds}"]
        if allow_insecure_callbacks:
            cmd.append("--allow-insecure-callbacks")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the emulator process did not start")
        started = json.loads(line)
        self.url: str = started["url"]
        #: Emulator time (Unix seconds) at which the preloaded tasks were created.
        self.created: float = started.get("created", 0.0)
        import requests

        self.http = requests.Session()
        self.http.trust_env = False

    def control(self, method: str, route: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"{self.url}/_emulator/{route}", timeout=60,
                                     **kwargs)
        response.raise_for_status()
        return response.json()

    def task_gets(self) -> list[str]:
        """Paths of every ``GET /v1/tasks/<id>`` received since the last clear."""
        found = self.control("GET", "requests", params={"method": "GET",
                                                        "path": "/v1/tasks/*"})
        return [r["path"] for r in found["requests"]]

    def clear_requests(self) -> None:
        self.control("DELETE", "requests")

    def stop(self) -> None:
        stop_process(self.proc, ask=self.proc.stdin.close)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def end_run(database: str, name: str, *, emulator: EmulatorProcess | None = None,
            procs: Iterable[subprocess.Popen] = ()) -> None:
    """A run's teardown: kill its worker processes ``procs`` still running, stop its
    emulator, then :func:`drop_scratch_database` (``database``, ``name``)."""
    for proc in procs:
        stop_process(proc)
    if emulator is not None:
        emulator.stop()
    drop_scratch_database(database, name)


def peak_rss_kb() -> int:
    """``VmHWM`` of this process (peak resident set size), in kB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# ------------------------------------------------------------------------ figures --
def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def row(benchmark: str, measure: str, value: float, unit: str = "", *,
        baseline: float | None = None, ratio: float | None = None,
        target: str | None = None, met: bool | None = None) -> dict[str, Any]:
    """One figure of the table."""
    if ratio is None and baseline:
        ratio = value / baseline
    return {"benchmark": benchmark, "measure": measure, "value": value, "unit": unit,
            "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3),
            "target": target, "met": met}


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    head = ["benchmark", "measure", "value", "unit", "baseline", "ratio", "target", "met"]
    cells = [[_fmt(r.get(k)) for k in head] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'>' if i in (2, 4, 5) else '<'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*c) for c in cells]
    return "\n".join(lines)


def print_table(rows: list[dict[str, Any]]) -> None:
    print(format_table(rows), flush=True)


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        import django

        django_version = django.get_version()
    except ImportError:  # pragma: no cover
        django_version = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": ram_gb,
            "python": platform.python_version(), "django": django_version,
            "postgresql": pg_version(), "platform": platform.platform()}


def write_result(name: str, rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Write ``benchmarks/results/<name>.json`` (rows, details, machine, time)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"benchmark": name, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(), "rows": rows, **extra}
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"written {path}", flush=True)
    return path
