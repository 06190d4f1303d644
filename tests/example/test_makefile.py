"""`make demo` installs what the demo needs; `make test` still installs the [dev] tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def dry_run(target: str, venv: Path) -> str:
    """The commands `make -n TARGET` would run with the virtualenv at ``venv``."""
    done = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


def fake_venv(tmp_path: Path, *stamps: str) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    later = time.time() + 5  # newer than pyproject.toml: make sees them up to date
    for stamp in stamps:
        (venv / stamp).write_text("")
        os.utime(venv / stamp, (later, later))
    os.utime(venv / "bin" / "python", (later - 1, later - 1))
    return venv


def test_demo_installs_the_package_without_the_dev_extra(tmp_path):
    commands = dry_run("demo", fake_venv(tmp_path))
    assert "pip install --quiet --disable-pip-version-check -e ." in commands
    assert "[dev]" not in commands and "sphinx" not in commands.lower()
    assert "run_demo.py" in commands


def test_test_after_demo_still_installs_the_dev_extra(tmp_path):
    venv = fake_venv(tmp_path, ".demo-installed")
    assert "pip install" not in dry_run("demo", venv)  # the demo's stamp is fresh
    commands = dry_run("test", venv)
    assert '-e ".[dev]"' in commands  # ... but it does not stand for [dev]
    assert "pytest" in commands
