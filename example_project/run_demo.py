#!/usr/bin/env python
"""``make demo``: run the example site, a django-q2 cluster and the Evolink emulator.

Steps: migrate, create the demo staff account (idempotent), start the emulator (only
without ``EVOLINK_API_KEY``), the web server (``runserver`` on 127.0.0.1:``DEMO_PORT``,
default 8000) and ``qcluster``, print where to point a browser, then stay in the
foreground printing every process's output with its name. Ctrl-C or SIGTERM stops them
all (each runs in its own process group, so a process's own children go too); if one of
them exits on its own, the others are stopped and the exit status is 1.

Environment: ``DEMO_PORT`` (site port), ``EVOLINK_EMULATOR_PORT`` (emulator port, default
8765, any free port when taken), ``EVOLINK_API_KEY`` (set: real Evolink, no emulator),
and the ``DATABASE_URL``/``REDIS_URL`` of ``example_project/env.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
STOP_TIMEOUT = 10.0  # seconds a process has to exit after SIGTERM before SIGKILL


def log(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    """Wait until something accepts connections on 127.0.0.1:port (False: proc died/timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Runner:
    """Starts named processes, prefixes their output and stops them all."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.stopping = threading.Event()

    def run_step(self, name: str, args: list[str]) -> str:
        """Run one command to completion; its output is returned (and shown on failure)."""
        done = subprocess.run([PYTHON, *args], cwd=HERE, env=self.env, capture_output=True,
                              text=True)
        if done.returncode != 0:
            sys.stdout.write(done.stdout + done.stderr)
            raise SystemExit(f"[demo] {name} failed (exit {done.returncode}); see above.")
        return done.stdout

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            [PYTHON, *args], cwd=HERE, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,  # own process group: Ctrl-C reaches only this runner
        )
        self.procs.append((name, proc))
        threading.Thread(target=self._pump, args=(name, proc), daemon=True).start()
        return proc

    @staticmethod
    def _pump(name: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(f"[{name}] {line}")
            sys.stdout.flush()

    def stop_all(self) -> None:
        """SIGTERM every process (newest first), then SIGKILL what is left of its group.

        Only the leader gets SIGTERM: qcluster stops its own workers in order (a SIGTERM to
        its whole group would make it wait for workers that are already gone).
        """
        self.stopping.set()
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop within {STOP_TIMEOUT:.0f} s: killing it")
            # the group may hold children (qcluster workers) even when the leader exited
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()

    def watch(self) -> int:
        """Block until a signal or until a process exits; 0 on a signal, 1 otherwise."""
        while not self.stopping.is_set():
            for name, proc in self.procs:
                if proc.poll() is not None:
                    log(f"{name} exited with status {proc.returncode}; stopping the others")
                    return 1
            self.stopping.wait(0.3)
        return 0


def main() -> int:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    env["PYTHONUNBUFFERED"] = "1"
    port = int(env.get("DEMO_PORT") or 8000)
    env["DEMO_PORT"] = str(port)
    if not port_free(port):
        log(f"port {port} is taken: stop what uses it or run e.g. `make demo DEMO_PORT=8001`")
        return 2
    use_emulator = not (env.get("EVOLINK_API_KEY") or "").strip()
    emulator_port = None
    if use_emulator:
        emulator_port = int(env.get("EVOLINK_EMULATOR_PORT") or 8765)
        if not port_free(emulator_port):
            emulator_port = free_port()
        env["EVOLINK_EMULATOR_URL"] = f"http://127.0.0.1:{emulator_port}"

    runner = Runner(env)
    log("migrating the database ...")
    runner.run_step("migrate", ["manage.py", "migrate", "--noinput"])
    account = json.loads(runner.run_step("demo account", ["manage.py", "demo_account", "--json"])
                         .strip().splitlines()[-1])

    def on_signal(signum, frame):
        runner.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    status = 1
    try:
        if use_emulator:
            emulator = runner.start("emulator", [
                "-m", "django_evolink.emulator", "--port", str(emulator_port),
                "--allow-insecure-callbacks",
            ])
            if not wait_listening(emulator_port, emulator):
                log("the emulator did not start; see its output above")
                return 1
        web = runner.start("web", ["manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"])
        runner.start("qcluster", ["manage.py", "qcluster"])
        if not wait_listening(port, web):
            log("the web server did not start; see its output above")
            return 1
        if runner.stopping.is_set():
            return 0
        url = f"http://127.0.0.1:{port}/"
        lines = [
            "",
            "=" * 66,
            f"  django-evolink demo is running. Open {url} in a browser.",
        ]
        if account.get("password"):
            lines.append(f"  Log in as {account['username']} / {account['password']}"
                         + ("  (new account)" if account.get("created") else ""))
        else:
            lines.append(f"  Log in as {account['username']} (password changed since; "
                         "new one: python example_project/manage.py demo_account --reset)")
        lines.append(f"  Admin: {url}admin/    REST API: {url}evolink/tasks/")
        lines.append(f"  Evolink: emulator at {env['EVOLINK_EMULATOR_URL']} (no API key set)"
                     if use_emulator else "  Evolink: the real service (EVOLINK_API_KEY is set)")
        lines += ["  Press Ctrl-C to stop everything.", "=" * 66, ""]
        print("\n".join(lines), flush=True)
        status = runner.watch()
        return status
    finally:
        log("stopping ...")
        runner.stop_all()
        log("stopped.")


if __name__ == "__main__":
    sys.exit(main())
