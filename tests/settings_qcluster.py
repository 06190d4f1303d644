"""Settings of the real ``qcluster`` subprocesses started by tests/background/test_qcluster.py.

Everything variable comes from the environment set by the test: the database
(``QC_DB_ENGINE``/``QC_DB_NAME``), the broker (``QC_BROKER`` = orm|redis), the emulator's
URL (``QC_EMULATOR_URL``) and the media root (``QC_MEDIA_ROOT``).
"""

import os

from tests.settings import *  # noqa: F403

if os.environ.get("QC_DB_ENGINE") == "postgresql":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql", "NAME": os.environ["QC_DB_NAME"],
        "USER": "postgres", "HOST": "127.0.0.1", "PORT": "5432",
    }}
else:
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("QC_DB_NAME", "qc.db"),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30,
                    "init_command": "PRAGMA journal_mode=WAL;"},
    }}

MEDIA_ROOT = os.environ.get("QC_MEDIA_ROOT", "/tmp/evolink-qc-media")  # noqa: S108

_name = os.environ.get("QC_CLUSTER_NAME", "evolink-qc")
Q_CLUSTER = {"name": _name, "workers": 2, "timeout": 60, "retry": 120, "poll": 0.1,
             "sync": False, "max_attempts": 2, "label": "evolink tests"}
if os.environ.get("QC_BROKER") == "redis":
    Q_CLUSTER["redis"] = {"host": "127.0.0.1", "port": 6379, "db": 5}
else:
    Q_CLUSTER["orm"] = "default"

_url = os.environ.get("QC_EMULATOR_URL", "http://127.0.0.1:8765")
EVOLINK = {
    "API_KEY": "sk-evo-emulator-test", "BASE_URL": _url, "FILES_BASE_URL": _url,
    "ALLOW_PRIVATE_URLS": True, "ASYNC_SUBMIT": True, "INSTALL_SCHEDULE": True,
    "MAX_RETRIES": 0, "RETRY_BACKOFF": 0.0, "RETRY_MAX_WAIT": 0.0,
    "POLL_MIN_INTERVAL": 0.5, "POLL_MAX_INTERVAL": 2.0,
}
