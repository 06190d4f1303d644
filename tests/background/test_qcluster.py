"""A real ``qcluster`` (ORM broker, then Redis broker) processes submit -> poll -> download.

The cluster, ``migrate`` and the commands run as subprocesses with tests/settings_qcluster.py
on a database of their own (a SQLite file, or a fresh PostgreSQL database when the suite
runs on PostgreSQL); the emulator runs in this process. Bounded by timeouts; slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from django.db import connection

from tests.conftest import make_image_bytes

pytestmark = pytest.mark.slow
LIMIT = 120  # seconds for the whole run


@pytest.fixture
def qc_env(tmp_path, evolink_emulator):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings_qcluster",
           "QC_EMULATOR_URL": evolink_emulator.url, "QC_MEDIA_ROOT": str(tmp_path / "media"),
           "QC_CLUSTER_NAME": f"evolink-qc-{uuid.uuid4().hex[:8]}", "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    dropdb = None
    if connection.vendor == "postgresql":
        import psycopg

        name = f"test_evolink_qc_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def dropdb():
            with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                                 autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        env.update(QC_DB_ENGINE="postgresql", QC_DB_NAME=name)
    else:
        env.update(QC_DB_ENGINE="sqlite", QC_DB_NAME=str(tmp_path / "qc.sqlite3"))
    manage(env, "migrate", "--no-input", "-v", "0")
    yield env
    if dropdb:
        dropdb()


def manage(env, *args, timeout=60, check=True):
    return subprocess.run([sys.executable, "-m", "django", *args], env=env, cwd=os.getcwd(),
                          capture_output=True, text=True, timeout=timeout, check=check)


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_qcluster_submit_poll_download(qc_env, broker, tmp_path, evolink_emulator):
    if broker == "redis":
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=5).ping()  # fails loudly if Redis is down
    env = {**qc_env, "QC_BROKER": broker}
    image = tmp_path / "in.png"
    image.write_bytes(make_image_bytes(600, 600))
    cluster = subprocess.Popen([sys.executable, "-m", "django", "qcluster"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    submit = subprocess.Popen(
        [sys.executable, "-m", "django", "evolink_submit", "--prompt", "a cat", "--image",
         str(image), "--n", "2", "--wait", "--interval", "0.2", "--timeout", str(LIMIT)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + LIMIT
    try:
        # the django-q2 scheduler ticks every 30 s; stand in for it with enqueued sweeps
        while submit.poll() is None and time.monotonic() < deadline:
            manage(env, "evolink_poll", "--enqueue", timeout=30)
            time.sleep(1)
        out, err = submit.communicate(timeout=10)
    finally:
        if submit.poll() is None:
            submit.kill()
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(30)
        except subprocess.TimeoutExpired:
            cluster.kill()
            cluster.wait(5)
    assert submit.returncode == 0, (out, err, cluster.stderr.read()[-3000:])
    paths = [line for line in out.splitlines() if line.endswith(".png") and "results" in line]
    assert len(paths) == 2 and all(os.path.getsize(p) > 0 for p in paths)
    emu = evolink_emulator
    assert emu.requests.count("POST", "/v1/images/generations") == 1  # submitted once
    assert emu.requests.count("GET", "/v1/tasks/*") >= 1  # polled by a worker
    assert emu.requests.count("GET", "/files/results/*") == 2  # each image fetched once
    state = manage(env, "shell", "-c", (
        "from django_evolink.models import ImageTask; t = ImageTask.objects.get();"
        "print(t.status, t.images_stored_at is not None, t.poll_count)"))
    status, stored, _polls = state.stdout.strip().splitlines()[-1].split()
    assert status == "completed" and stored == "True"
