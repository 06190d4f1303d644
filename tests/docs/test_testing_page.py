"""docs/testing.md, run as written in a brand-new site (not only compiled).

``django-admin startproject`` makes the site; docs/installation.md's settings and URL
blocks are added to it as a reader would (its three apps into the generated
``INSTALLED_APPS``, its ``urlpatterns`` after the generated ones); every block of
docs/testing.md marked ``<!-- snippet: site-file PATH -->`` is written to PATH (the
``pytest.ini`` naming ``DJANGO_SETTINGS_MODULE``, the test settings, the test modules).
Then, in that directory and with nothing of this repository on the path: ``manage.py
check`` must find no issue, and the site's own ``pytest`` must pass every documented test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTING = ROOT / "docs" / "testing.md"
INSTALLATION = ROOT / "docs" / "installation.md"
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([a-z0-9]*)\s*$")
SITE_FILE = re.compile(r"^\s*<!--\s*snippet:\s*site-file\s+(\S+)\s*-->\s*$")


def blocks(path: Path) -> list[tuple[str, str, str]]:
    """(marker argument or "", language, text) of every fenced block of ``path``."""
    found: list[tuple[str, str, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = SITE_FILE.match(previous)
        body, j = [], i + 1
        while j < len(lines) and not lines[j].startswith(match.group(1)):
            body.append(lines[j])
            j += 1
        found.append((marker.group(1) if marker else "", match.group(2), "\n".join(body) + "\n"))
        i = j + 1
    return found


def site_files() -> dict[str, str]:
    files = {name: text for name, _lang, text in blocks(TESTING) if name}
    assert "pytest.ini" in files and "mysite/settings_test.py" in files, (
        "docs/testing.md lost its pytest.ini or settings_test.py block")
    return files


def installation_blocks() -> tuple[str, str]:
    """docs/installation.md's settings block and URLconf block."""
    python = [text for _name, lang, text in blocks(INSTALLATION) if lang == "python"]
    [settings_block] = [t for t in python if "INSTALLED_APPS" in t]
    [urls_block] = [t for t in python if "urlpatterns" in t]
    return settings_block, urls_block


def documented_tests() -> int:
    return sum(len(re.findall(r"^def test_", text, re.M))
               for name, text in site_files().items() if name.endswith(".py"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "EVOLINK_API_KEY")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fresh-site")
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(root)],
                   check=True, env=_env(), cwd=root, capture_output=True, timeout=60)
    settings_block, urls_block = installation_blocks()
    settings = root / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text() + "\n_STARTPROJECT_APPS = INSTALLED_APPS\n"
        "# --- docs/installation.md ---\n" + settings_block
        + "\nINSTALLED_APPS = _STARTPROJECT_APPS + [\n"
          "    app for app in INSTALLED_APPS if app not in _STARTPROJECT_APPS]\n")
    urls = root / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text() + "\n_startproject_urlpatterns = urlpatterns\n"
        "# --- docs/installation.md ---\n" + urls_block
        + "\nurlpatterns = _startproject_urlpatterns + urlpatterns\n")
    for name, text in site_files().items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "tests").mkdir(exist_ok=True)
    return root


def test_the_page_has_site_files_with_tests():
    assert documented_tests() >= 4


def test_the_documented_site_passes_manage_py_check(site):
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"], cwd=site,
        env={**_env(), "EVOLINK_API_KEY": "sk-evo-fresh-site-0123456789"},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_the_documented_tests_pass_in_the_fresh_site(site):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-W",
         "error::RuntimeWarning"],
        cwd=site, env=_env(), capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert f"{documented_tests()} passed" in output, output[-3000:]
    assert "Traceback" not in output, output[-6000:]  # e.g. a live_server thread's crash
    assert str(ROOT / "tests") not in output  # the site's tests, not this repository's
