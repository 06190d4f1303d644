"""Django settings of the benchmarks (``DJANGO_SETTINGS_MODULE=benchmarks.settings``).

Production-like where it matters for the figures: ``DEBUG = False``, persistent
database connections, django-q2 with the ORM broker (enqueueing a download writes a row;
nothing runs in the request). Driven by environment variables so that gunicorn workers
and benchmark subprocesses share one module:

- ``BENCH_DATABASE_URL``: ``postgres://user@host:port/name`` or ``sqlite:///path``
  (default: an SQLite file in the temporary directory);
- ``BENCH_EVOLINK_URL``: the emulator's origin (default ``https://api.evolink.test``,
  answered by ``responses`` where a benchmark needs it);
- ``BENCH_TRUST_CALLBACK_BODY``: ``1`` applies callback bodies (default ``0``: re-fetch);
- ``BENCH_POLL_CONCURRENCY``, ``BENCH_POLL_BATCH_SIZE``: the sweep's knobs.
"""

from __future__ import annotations

import os
import tempfile

from tests.settings import _database_from_url

SECRET_KEY = "benchmarks-only-not-secret"  # noqa: S105
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchmarks.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
WSGI_APPLICATION = "benchmarks.wsgi.application"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_q",
    "django_evolink",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

_URL = os.environ.get("BENCH_DATABASE_URL") or "sqlite:///" + os.path.join(
    tempfile.gettempdir(), "django_evolink_bench.sqlite3"
)
_DB = _database_from_url(_URL)
_DB.pop("TEST", None)
if _DB["ENGINE"].endswith("sqlite3"):
    _DB["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30}
else:
    _DB["CONN_MAX_AGE"] = 60
DATABASES = {"default": _DB}

STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = os.environ.get("BENCH_MEDIA_ROOT") or os.path.join(
    tempfile.gettempdir(), "django_evolink_bench_media"
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

_EVOLINK_URL = os.environ.get("BENCH_EVOLINK_URL") or "https://api.evolink.test"
EVOLINK = {
    "API_KEY": "sk-evo-bench-key-0123456789abcdef",
    "BASE_URL": _EVOLINK_URL,
    "FILES_BASE_URL": _EVOLINK_URL.replace("://api.", "://files-api."),
    "ALLOW_PRIVATE_URLS": True,
    "CALLBACK_BASE_URL": None,
    "TRUST_CALLBACK_BODY": os.environ.get("BENCH_TRUST_CALLBACK_BODY") == "1",
    "INSTALL_SCHEDULE": False,
    "RETRY_BACKOFF": 0.0,
    "RETRY_MAX_WAIT": 0.0,
    "POLL_CONCURRENCY": int(os.environ.get("BENCH_POLL_CONCURRENCY") or 8),
    "POLL_BATCH_SIZE": int(os.environ.get("BENCH_POLL_BATCH_SIZE") or 100),
    "POLL_MAX_TASKS_PER_SWEEP": 1_000_000,
    "POLL_LEASE_SECONDS": 600.0,
    # Each task is due once per measured sweep: the next poll is after the benchmark.
    "POLL_MIN_INTERVAL": 3600.0,
    "POLL_MAX_INTERVAL": 7200.0,
    "POOL_SIZE": 32,
    "TASK_TIMEOUT": 30 * 86400.0,
}

# timeout above the longest download job of the allowed models (check W013: 15 images, 4 at
# a time, 35 s each = 140 s)
Q_CLUSTER = {"name": "bench", "orm": "default", "sync": os.environ.get("BENCH_Q_SYNC") == "1",
             "timeout": 150, "retry": 210}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "root": {"handlers": ["null"], "level": "ERROR"},
    "loggers": {"django_q": {"handlers": ["null"], "propagate": False}},
}
