"""The emulator's two command lines on a port that is taken, and the switches they share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from django_evolink.emulator import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port():
    """A port something already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def _one_line_no_traceback(done: subprocess.CompletedProcess, port: int) -> str:
    output = (done.stdout + done.stderr).strip()
    assert done.returncode != 0, output
    assert "Traceback" not in output
    [line] = [line for line in output.splitlines() if "error" in line.lower()]
    assert f"port {port}" in line and "already in use" in line
    assert f"--port {port + 1}" in line  # the fix, spelled out
    return line


def test_module_cli_on_a_busy_port_says_so_in_one_line(busy_port):
    done = subprocess.run([sys.executable, "-m", "django_evolink.emulator", "--port",
                           str(busy_port)], capture_output=True, text=True, timeout=30,
                          env=_env())
    line = _one_line_no_traceback(done, busy_port)
    assert line.startswith("python -m django_evolink.emulator: error:")
    assert done.returncode == 2


def test_management_command_on_a_busy_port_says_so_in_one_line(busy_port):
    done = subprocess.run([sys.executable, "-m", "django", "evolink_emulator", "--port",
                           str(busy_port)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=_env(DJANGO_SETTINGS_MODULE="tests.settings"))
    line = _one_line_no_traceback(done, busy_port)
    assert line.startswith("CommandError:")
    assert done.returncode == 1


def test_other_listen_failures_name_host_and_port():
    error = cli.start_error("10.255.0.1", 8765, OSError(99, "Cannot assign requested address"))
    assert str(error) == ("cannot listen on 10.255.0.1:8765: Cannot assign requested address; "
                          "check --host and --port")
    assert not error.in_use


def test_management_command_shares_every_switch_of_the_module_cli():
    from django.core.management import load_command_class

    command = load_command_class("django_evolink", "evolink_emulator")
    ours = {a.dest for a in command.create_parser("manage.py", "evolink_emulator")._actions}
    module = {a.dest for a in cli.build_parser()._actions}
    assert "allow_insecure_callbacks" in ours
    assert module - {"help"} <= ours
    options = command.create_parser("manage.py", "evolink_emulator").parse_args(
        ["--allow-insecure-callbacks", "--port", "0"])
    assert cli.make_emulator(vars(options)).allow_insecure_callbacks is True
