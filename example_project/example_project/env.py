"""Settings of the example site that depend on the environment, as plain functions.

Kept apart from ``settings.py`` so the tests can call them with any environment:

=========================  ==================================================================
variable                   effect
=========================  ==================================================================
``EVOLINK_API_KEY``        set: talk to the real Evolink; unset: use the local emulator
``EVOLINK_EMULATOR_URL``   where the emulator listens (default ``http://127.0.0.1:8765``);
                           ``make demo`` starts it and sets this
``EVOLINK_CALLBACK_BASE_URL``  with a key: the site's public https origin for callbacks
``DEMO_PORT``              port of the site (default 8000); the emulator's callbacks go there
``DATABASE_URL``           ``postgres://user:pass@host:5432/name`` or ``sqlite:////abs/path``;
                           default: SQLite file ``example_project/db.sqlite3``
``REDIS_URL``              ``redis://host:6379/0``: django-q2's broker and the cache;
                           default: the ORM broker (the database) and a local memory cache
``Q_WORKERS``              django-q2 worker processes of ``qcluster`` (default 2)
=========================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

#: Where ``make demo`` runs the emulator unless told otherwise.
DEFAULT_EMULATOR_URL = "http://127.0.0.1:8765"
#: The key the example site sends to the emulator (any ``sk-evo-`` key is accepted there).
EMULATOR_API_KEY = "sk-evo-emulator"
DEFAULT_PORT = 8000

#: SQLite pragmas run on every new connection: WAL lets readers (the web process) work
#: while a writer (a worker) holds the write lock; ``synchronous=NORMAL`` is safe with WAL.
SQLITE_INIT_COMMAND = "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL"


def uses_emulator(environ: Mapping[str, str]) -> bool:
    """True when no ``EVOLINK_API_KEY`` is set: the example site then uses the emulator."""
    return not (environ.get("EVOLINK_API_KEY") or "").strip()


def site_port(environ: Mapping[str, str]) -> int:
    """The port of the web server (``DEMO_PORT``, default 8000)."""
    value = (environ.get("DEMO_PORT") or "").strip()
    if not value:
        return DEFAULT_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"DEMO_PORT must be a TCP port number (1-65535), got {value!r}.")
    return int(value)


def emulator_url(environ: Mapping[str, str]) -> str:
    """The emulator's origin (``EVOLINK_EMULATOR_URL``, default http://127.0.0.1:8765)."""
    return (environ.get("EVOLINK_EMULATOR_URL") or DEFAULT_EMULATOR_URL).rstrip("/")


def evolink_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``EVOLINK`` setting for this environment.

    Without ``EVOLINK_API_KEY``: every Evolink URL points at the emulator, private
    (loopback) URLs are allowed and callbacks come to ``http://127.0.0.1:<DEMO_PORT>``
    (the emulator runs with ``--allow-insecure-callbacks``). With a key: the real Evolink,
    the key read from the environment by django-evolink itself, callbacks only when
    ``EVOLINK_CALLBACK_BASE_URL`` names the site's public https origin.
    """
    if uses_emulator(environ):
        url = emulator_url(environ)
        return {
            "API_KEY": EMULATOR_API_KEY,
            "BASE_URL": url,
            "FILES_BASE_URL": url,
            "ALLOW_PRIVATE_URLS": True,
            "CALLBACK_BASE_URL": f"http://127.0.0.1:{site_port(environ)}",
        }
    return {
        # no "API_KEY" here: django-evolink reads the EVOLINK_API_KEY variable itself, so
        # the key is never copied into settings (nor shown by a debug page)
        "CALLBACK_BASE_URL": (environ.get("EVOLINK_CALLBACK_BASE_URL") or "").strip() or None,
    }


def database_from_url(url: str | None, *, sqlite_path: Path) -> dict[str, Any]:
    """One ``DATABASES`` entry from ``DATABASE_URL`` (None: the SQLite file ``sqlite_path``)."""
    if not url:
        return sqlite_database(str(sqlite_path))
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "postgres",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            # keep connections between requests, but check them before use
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        # sqlite:////abs/path -> /abs/path ; sqlite:///rel.db -> rel.db
        return sqlite_database(path[1:] if path.startswith("//") else path.lstrip("/") or path)
    raise ValueError(
        f"DATABASE_URL must start with postgres://, postgresql:// or sqlite://, "
        f"got {parts.scheme or 'no scheme'}://."
    )


def sqlite_database(name: str) -> dict[str, Any]:
    """A SQLite entry fit for a web process and django-q2 workers sharing one file."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": name,
        "OPTIONS": {
            # take the write lock at BEGIN: no "database is locked" half-way a transaction
            "transaction_mode": "IMMEDIATE",
            # wait this long (seconds) for another process's write lock
            "timeout": 20,
            "init_command": SQLITE_INIT_COMMAND,
        },
    }


def q_cluster(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``Q_CLUSTER`` setting: ORM broker by default, Redis with ``REDIS_URL``."""
    workers = (environ.get("Q_WORKERS") or "2").strip()
    if not workers.isdigit() or int(workers) < 1:
        raise ValueError(f"Q_WORKERS must be a whole number >= 1, got {workers!r}.")
    cluster: dict[str, Any] = {
        "name": "example",
        "workers": int(workers),
        # a task may run at most this long: a download of the most images a model makes
        # (15) at CONNECT_TIMEOUT + DOWNLOAD_TIMEOUT (35 s) each fits (check W013) ...
        "timeout": 600,
        # ... and is handed to another worker only after this long: must exceed timeout
        "retry": 660,
        "max_attempts": 3,
        # after downtime run a missed schedule once, not once per missed minute
        "catch_up": False,
        "save_limit": 500,
        "label": "Django Q2",
    }
    redis_url = (environ.get("REDIS_URL") or "").strip()
    if redis_url:
        cluster["redis"] = redis_url
    else:
        cluster["orm"] = "default"
        cluster["poll"] = 0.5  # seconds between two looks at the ORM queue
    return cluster


def caches(environ: Mapping[str, str]) -> dict[str, Any]:
    """``CACHES``: Redis with ``REDIS_URL`` (throttle counts shared by every web process)."""
    redis_url = (environ.get("REDIS_URL") or "").strip()
    if redis_url:
        return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                            "LOCATION": redis_url}}
    return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
