"""Helpers of the example-site tests (tests/example/).

The example site lives in ``example_project/`` with its own ``manage.py``; its packages
(``example_project`` and ``demo``) are importable once that directory is on ``sys.path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "example_project"
if str(EXAMPLE_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_DIR))

#: Environment variables the example settings read; cleared so the host's own do not leak in.
EXAMPLE_ENV_VARS = (
    "EVOLINK_API_KEY", "EVOLINK_EMULATOR_URL", "EVOLINK_CALLBACK_BASE_URL", "DEMO_PORT",
    "DATABASE_URL", "REDIS_URL", "Q_WORKERS", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_DEBUG",
    "CSRF_TRUSTED_ORIGINS", "SECURE_HSTS_SECONDS", "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER", "DJANGO_SETTINGS_MODULE", "MEDIA_ROOT",
    "EXAMPLE_DEMO_CREDENTIALS", "EVOLINK_EMULATOR_PORT",
)


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without the example's variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in EXAMPLE_ENV_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def manage(*args: str, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``example_project/manage.py ARGS`` in a fresh interpreter (output captured)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=EXAMPLE_DIR, env=env or clean_env(),
        capture_output=True, text=True, timeout=timeout,
    )


def use_example_site(settings, live_url: str | None = None) -> None:
    """Make the running test Django serve the example site: its ``demo`` app and urls.

    ``settings`` is pytest-django's fixture (restored after the test). The test suite's
    own apps already include everything django-evolink needs.
    """
    if "demo" not in settings.INSTALLED_APPS:
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "demo"]
    settings.LANGUAGES = [("en", "English"), ("ja", "日本語"), ("zh-hans", "简体中文")]
    settings.ROOT_URLCONF = "example_project.urls"
    settings.LOGIN_URL = "login"
    settings.LOGIN_REDIRECT_URL = "demo:index"
    settings.EXAMPLE_SERVE_MEDIA = True
    settings.EVOLINK_USES_EMULATOR = True
    if live_url:
        evolink = dict(settings.EVOLINK)
        evolink["CALLBACK_BASE_URL"] = live_url
        settings.EVOLINK = evolink
