"""The example site's settings: emulator vs real Evolink, databases, brokers, checks."""

from __future__ import annotations

import importlib
import secrets
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.support.example import EXAMPLE_ENV_VARS, clean_env, manage

# importable once tests.support.example has put example_project/ on sys.path
env = importlib.import_module("example_project.env")

KEY = "sk-evo-example-0123456789abcdef"


def load(module: str, monkeypatch: pytest.MonkeyPatch, **environ: str):
    """Import a settings module afresh with exactly ``environ`` as the example's variables."""
    for name in EXAMPLE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    for name in ("example_project.settings", "example_project.settings_production"):
        sys.modules.pop(name, None)
    try:
        return importlib.import_module(module)
    finally:
        for name in ("example_project.settings", "example_project.settings_production"):
            sys.modules.pop(name, None)


def production_env(**extra: str) -> dict[str, str]:
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "www.example.com,example.com",
        "DATABASE_URL": "postgres://site:secret@db.example.com:5432/site",
        "EVOLINK_API_KEY": KEY,
        "EVOLINK_CALLBACK_BASE_URL": "https://www.example.com",
        **extra,
    }


# --- the emulator/real switch ---------------------------------------------------------

def test_without_a_key_every_evolink_url_points_at_the_emulator():
    assert env.uses_emulator({}) and env.uses_emulator({"EVOLINK_API_KEY": "  "})
    assert env.evolink_settings({}) == {
        "API_KEY": "sk-evo-emulator",
        "BASE_URL": "http://127.0.0.1:8765",
        "FILES_BASE_URL": "http://127.0.0.1:8765",
        "ALLOW_PRIVATE_URLS": True,
        "CALLBACK_BASE_URL": "http://127.0.0.1:8000",
    }
    moved = env.evolink_settings({"EVOLINK_EMULATOR_URL": "http://127.0.0.1:9999/",
                                  "DEMO_PORT": "8001"})
    assert moved["BASE_URL"] == moved["FILES_BASE_URL"] == "http://127.0.0.1:9999"
    assert moved["CALLBACK_BASE_URL"] == "http://127.0.0.1:8001"


def test_with_a_key_the_real_evolink_is_used_and_the_key_stays_in_the_environment():
    settings = env.evolink_settings({"EVOLINK_API_KEY": KEY})
    assert not env.uses_emulator({"EVOLINK_API_KEY": KEY})
    assert settings == {"CALLBACK_BASE_URL": None}  # default endpoints, no private URLs
    assert KEY not in repr(settings)
    settings = env.evolink_settings({"EVOLINK_API_KEY": KEY,
                                     "EVOLINK_CALLBACK_BASE_URL": "https://www.example.com"})
    assert settings["CALLBACK_BASE_URL"] == "https://www.example.com"


def test_settings_module_follows_the_switch(monkeypatch):
    dev = load("example_project.settings", monkeypatch)
    assert dev.EVOLINK_USES_EMULATOR and dev.EXAMPLE_EMULATOR_AUTOSTART
    assert dev.EVOLINK["BASE_URL"] == dev.EXAMPLE_EMULATOR_URL == "http://127.0.0.1:8765"

    runner = load("example_project.settings", monkeypatch,
                  EVOLINK_EMULATOR_URL="http://127.0.0.1:8799")
    assert runner.EVOLINK_USES_EMULATOR and not runner.EXAMPLE_EMULATOR_AUTOSTART
    assert runner.EVOLINK["BASE_URL"] == "http://127.0.0.1:8799"

    real = load("example_project.settings", monkeypatch, EVOLINK_API_KEY=KEY)
    assert not real.EVOLINK_USES_EMULATOR and not real.EXAMPLE_EMULATOR_AUTOSTART
    assert "BASE_URL" not in real.EVOLINK and "API_KEY" not in real.EVOLINK


def test_bad_environment_values_are_refused_with_what_is_allowed():
    with pytest.raises(ValueError, match="DEMO_PORT must be a TCP port number"):
        env.site_port({"DEMO_PORT": "http"})
    with pytest.raises(ValueError, match="Q_WORKERS must be a whole number"):
        env.q_cluster({"Q_WORKERS": "0"})
    with pytest.raises(ValueError, match="postgres://, postgresql:// or sqlite://"):
        env.database_from_url("mysql://x@y/z", sqlite_path="/tmp/x")


# --- databases and brokers -------------------------------------------------------------

def test_sqlite_by_default_with_immediate_transactions_and_wal(tmp_path):
    db = env.database_from_url(None, sqlite_path=tmp_path / "db.sqlite3")
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(tmp_path / "db.sqlite3")
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]
    assert env.database_from_url("sqlite:////var/db/site.db", sqlite_path="x")["NAME"] == (
        "/var/db/site.db")


def test_database_url_names_postgresql():
    db = env.database_from_url("postgres://site:p%40ss@db.example.com:6543/prod",
                               sqlite_path="unused")
    assert db == {
        "ENGINE": "django.db.backends.postgresql", "NAME": "prod", "USER": "site",
        "PASSWORD": "p@ss", "HOST": "db.example.com", "PORT": "6543",
        "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True,
    }


def test_q_cluster_orm_broker_by_default_and_redis_with_redis_url():
    orm = env.q_cluster({})
    assert orm["orm"] == "default" and "redis" not in orm
    assert orm["retry"] > orm["timeout"]  # else a running task is handed out twice (W003)
    assert orm["catch_up"] is False
    redis = env.q_cluster({"REDIS_URL": "redis://cache:6379/1", "Q_WORKERS": "8"})
    assert redis["redis"] == "redis://cache:6379/1" and "orm" not in redis
    assert redis["workers"] == 8
    assert env.caches({"REDIS_URL": "redis://cache:6379/1"})["default"]["BACKEND"] == (
        "django.core.cache.backends.redis.RedisCache")


# --- production settings -----------------------------------------------------------------

def test_production_settings_name_every_missing_variable(monkeypatch):
    with pytest.raises(ImproperlyConfigured) as info:
        load("example_project.settings_production", monkeypatch)
    for name in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "EVOLINK_API_KEY"):
        assert name in str(info.value)
    with pytest.raises(ImproperlyConfigured, match="EVOLINK_API_KEY") as info:
        load("example_project.settings_production", monkeypatch,
             **{k: v for k, v in production_env().items() if k != "EVOLINK_API_KEY"})
    assert "SECRET_KEY" not in str(info.value)


def test_production_settings_values(monkeypatch):
    prod = load("example_project.settings_production", monkeypatch, **production_env())
    assert prod.DEBUG is False
    assert prod.ALLOWED_HOSTS == ["www.example.com", "example.com"]
    assert prod.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert prod.EVOLINK == {"CALLBACK_BASE_URL": "https://www.example.com"}
    assert prod.SECURE_SSL_REDIRECT and prod.SESSION_COOKIE_SECURE and prod.CSRF_COOKIE_SECURE
    assert prod.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")
    assert not prod.EXAMPLE_EMULATOR_AUTOSTART


# --- manage.py check in a fresh interpreter ------------------------------------------------

def test_development_settings_pass_check_without_a_key(tmp_path):
    done = manage("check", "--fail-level", "WARNING",
                  env=clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_development_settings_with_a_key_read_it_from_the_environment(tmp_path):
    code = (
        "from django.db import connection; from django_evolink import conf;"
        "import os;"
        "c = connection.cursor(); c.execute('PRAGMA journal_mode');"
        "print('journal', c.fetchone()[0]);"
        "print('mode', connection.transaction_mode);"
        "print('key-from-env', conf.api_key() == os.environ['EVOLINK_API_KEY']);"
        "print('base', conf.get('BASE_URL'))"
    )
    done = manage("shell", "-c", code, env=clean_env(
        EVOLINK_API_KEY=KEY, DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "journal wal" in done.stdout
    assert "mode IMMEDIATE" in done.stdout
    assert "key-from-env True" in done.stdout
    assert "base https://api.evolink.ai" in done.stdout
    assert KEY not in done.stdout + done.stderr
    check = manage("check", "--fail-level", "WARNING",
                   env=clean_env(EVOLINK_API_KEY=KEY,
                                 DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3"))
    assert check.returncode == 0, check.stdout + check.stderr


def test_production_settings_pass_check_deploy():
    done = manage("check", "--deploy", "--fail-level", "WARNING",
                  "--settings=example_project.settings_production",
                  env=clean_env(**production_env()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_check_deploy_refuses_an_http_callback_origin():
    done = manage("check", "--deploy", "--settings=example_project.settings_production",
                  env=clean_env(**production_env(EVOLINK_CALLBACK_BASE_URL="http://example.com")))
    assert done.returncode != 0
    assert "django_evolink.E002" in done.stdout + done.stderr


def test_demo_log_keeps_info_for_what_a_person_needs(tmp_path):
    """django-q2 logs as "django-q" (its own INFO handler otherwise: two lines per job);
    runserver logs every request (the page asks about a running task every second)."""
    code = (
        "import logging, django_q.conf;"
        "q = logging.getLogger('django-q'); s = logging.getLogger('django.server');"
        "e = logging.getLogger('django_evolink.core.transitions');"
        "print('q-info', q.isEnabledFor(logging.INFO), 'q-warning', q.isEnabledFor(30));"
        "print('server-info', s.isEnabledFor(logging.INFO), 'server-4xx', s.isEnabledFor(30));"
        "print('evolink-info', e.isEnabledFor(logging.INFO))"
    )
    done = manage("shell", "-c", code,
                  env=clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "q-info False q-warning True" in done.stdout
    assert "server-info False server-4xx True" in done.stdout
    assert "evolink-info True" in done.stdout
