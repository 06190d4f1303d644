"""A ``qcluster`` under a process supervisor: stopped and restarted reliably, also after one
of its workers was killed.

django-q2's cluster could ignore SIGTERM once a worker had died, and had to be killed by
hand. docs/deployment.md gives systemd and supervisord set-ups that do not depend on it:
SIGTERM first, then, after a grace period, SIGKILL to every process of the cluster (its
cgroup or its process group). This test does exactly what they do, with the grace period
scaled down, to a real cluster whose worker was killed with SIGKILL.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
DOCS = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
GRACE = 8.0  # the documented TimeoutStopSec / stopwaitsecs, scaled down for the test


def documented(key: str) -> str:
    """A ``key=value`` of the unit/program blocks of docs/deployment.md."""
    match = re.search(rf"^{key}\s*=\s*(\S+)", DOCS.read_text(), re.M)
    assert match, f"{key} is not documented in docs/deployment.md"
    return match.group(1)


def group_pids(pgid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
            pids.add(int(entry.name))
    return pids


def children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.add(int(entry.name))
    return out


def start_cluster(env) -> subprocess.Popen:
    # its own session: the process group a supervisor (or systemd's cgroup) holds
    return subprocess.Popen([sys.executable, "-m", "django", "qcluster"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@pytest.fixture
def cluster_env(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings_qcluster",
           "QC_EMULATOR_URL": "http://127.0.0.1:9", "QC_MEDIA_ROOT": str(tmp_path / "media"),
           "QC_CLUSTER_NAME": f"evolink-sv-{uuid.uuid4().hex[:8]}", "PYTHONUNBUFFERED": "1",
           "QC_DB_ENGINE": "sqlite", "QC_DB_NAME": str(tmp_path / "qc.sqlite3")}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "django", "migrate", "--no-input", "-v", "0"],
                   env=env, check=True, timeout=120, capture_output=True)
    return env


@pytest.mark.parametrize("supervisor", ["systemd KillMode=mixed", "supervisord stopasgroup"])
def test_a_cluster_with_a_killed_worker_is_stopped_and_restarted(cluster_env, supervisor):
    assert documented("KillMode") == "mixed" and documented("killasgroup") == "true"
    assert documented("stopasgroup") == "true" and documented("Restart") == "always"
    for _run in range(2):  # stop, then a restart that must come up and stop again
        cluster = start_cluster(cluster_env)
        try:
            assert wait_for(lambda c=cluster: len(descendants(c.pid)) >= 3, 30), \
                "the cluster did not start its workers"
            if _run == 0:
                victim = max(descendants(cluster.pid))
                os.kill(victim, signal.SIGKILL)  # a worker dies (OOM killer, a crash)
                time.sleep(2)
            started = time.monotonic()
            if supervisor.startswith("systemd"):
                os.kill(cluster.pid, signal.SIGTERM)  # KillMode=mixed: the main process
            else:
                os.killpg(cluster.pid, signal.SIGTERM)  # stopasgroup: the whole group
            stopped = wait_for(lambda c=cluster: c.poll() is not None and not group_pids(c.pid),
                               GRACE)
            if not stopped:  # TimeoutStopSec / stopwaitsecs passed: SIGKILL to the group
                try:
                    os.killpg(cluster.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            assert wait_for(lambda c=cluster: c.poll() is not None and not group_pids(c.pid),
                            5), "processes of the cluster survived SIGKILL to its group"
            elapsed = time.monotonic() - started
            assert elapsed < GRACE + 5
            # the figure docs/reliability.md quotes (shown with pytest -s)
            print(f"{supervisor}, run {_run + 1}: stopped by "
                  f"{'SIGTERM' if stopped else 'SIGKILL after the grace period'} "
                  f"in {elapsed:.1f} s")
        finally:
            try:
                os.killpg(cluster.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            cluster.wait(10)
