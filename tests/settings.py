"""Settings for django-evolink's own test suite.

The database is SQLite unless ``DATABASE_URL`` names PostgreSQL, e.g.
``DATABASE_URL=postgres://postgres@127.0.0.1:5432/test``.
"""

import os
import tempfile
from urllib.parse import unquote, urlparse

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_q",
    "django_evolink",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # as a multilingual site has it: Accept-Language (or the language cookie) picks ja or
    # zh-Hans; without either, LANGUAGE_CODE (en-us) as before
    "django.middleware.locale.LocaleMiddleware",
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


def _database_from_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme in ("postgres", "postgresql", "pgsql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")) or "test",
            "USER": unquote(parsed.username or "postgres"),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "127.0.0.1",
            "PORT": str(parsed.port or 5432),
            "TEST": {"NAME": "test_django_evolink_" + str(os.getpid())},
        }
    if parsed.scheme == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.path or ":memory:"}
    raise ValueError(f"Unsupported DATABASE_URL scheme: {parsed.scheme}")


if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": _database_from_url(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(tempfile.gettempdir(), "django_evolink_tests.sqlite3"),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL;",
            },
            # A file, not Django's shared-cache in-memory default: live-server threads,
            # inline django-q2 work and the test then wait on each other's locks (busy
            # timeout) instead of failing with "database table is locked".
            "TEST": {
                "NAME": os.path.join(
                    tempfile.gettempdir(), f"django_evolink_test_{os.getpid()}.sqlite3"
                )
            },
        }
    }

STATIC_URL = "/static/"
MEDIA_URL = "/media/"
MEDIA_ROOT = os.path.join(tempfile.gettempdir(), f"django_evolink_test_media_{os.getpid()}")

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {"TITLE": "django-evolink", "VERSION": "0.1.0"}

EVOLINK = {
    "API_KEY": "sk-evo-test-key-0123456789abcdef",
    "BASE_URL": "https://api.evolink.test",
    "FILES_BASE_URL": "https://files-api.evolink.test",
    "RETRY_BACKOFF": 0.0,
    "RETRY_MAX_WAIT": 0.0,
    "INSTALL_SCHEDULE": False,
    # The site the suite was written for allows the seed's model only; the tests of the
    # other models (tests/catalogue/) allow every model with override_settings.
    "MODELS": ["wan2.5-image-to-image"],
}

Q_CLUSTER = {"name": "tests", "orm": "default", "sync": True, "timeout": 300, "retry": 360}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_q": {"handlers": ["null"], "propagate": False}},
}
