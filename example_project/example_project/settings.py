"""Settings of the django-evolink example site (development; see settings_production.py).

django-evolink is installed exactly as docs/installation.md says: three apps, one
``include`` in urls.py, an ``EVOLINK`` dict and the site's own ``Q_CLUSTER``. What
depends on the environment (emulator or real Evolink, SQLite or PostgreSQL, ORM broker
or Redis) is computed in ``env.py``.
"""

import os
from pathlib import Path

from . import env

BASE_DIR = Path(__file__).resolve().parent.parent  # example_project/

SECRET_KEY = os.environ.get("SECRET_KEY") or "example-site-development-only-not-a-secret"
DEBUG = os.environ.get("DJANGO_DEBUG", "1") not in ("0", "false", "False", "")
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

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
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # the page, the API's errors and the admin in the browser's language (docs/i18n.md)
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

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

# SQLite (IMMEDIATE transactions, WAL) unless DATABASE_URL names PostgreSQL.
DATABASES = {
    "default": env.database_from_url(
        os.environ.get("DATABASE_URL"), sqlite_path=BASE_DIR / "db.sqlite3"
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CACHES = env.caches(os.environ)

LANGUAGE_CODE = "en-us"
#: The languages django-evolink ships catalogues for (Accept-Language or the switcher picks).
LANGUAGES = [("en", "English"), ("ja", "日本語"), ("zh-hans", "简体中文")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

#: Where ``manage.py demo_account`` keeps the demo password (default example_project/.demo-account).
EXAMPLE_DEMO_CREDENTIALS = os.environ.get("EXAMPLE_DEMO_CREDENTIALS") or BASE_DIR / ".demo-account"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "demo:index"
LOGOUT_REDIRECT_URL = "login"

REST_FRAMEWORK = {
    # the browser page calls the API with its session cookie (and the CSRF token)
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
}

# --- django-evolink -------------------------------------------------------------------
#: True: no EVOLINK_API_KEY, every Evolink URL points at the local emulator.
EVOLINK_USES_EMULATOR = env.uses_emulator(os.environ)
#: True: ``manage.py runserver`` starts the emulator in its own process when nothing
#: listens at the emulator URL yet (``make demo`` runs it as a separate process and sets
#: EVOLINK_EMULATOR_URL, which turns this off).
EXAMPLE_EMULATOR_AUTOSTART = EVOLINK_USES_EMULATOR and not os.environ.get("EVOLINK_EMULATOR_URL")
EXAMPLE_EMULATOR_URL = env.emulator_url(os.environ)

EVOLINK = env.evolink_settings(os.environ)
if EVOLINK_USES_EMULATOR:
    # The emulator calls the plain-http runserver back; Evolink itself would refuse that
    # origin, which check W010 says. Expected here, so silenced for the demo only.
    SILENCED_SYSTEM_CHECKS = ["django_evolink.W010"]

# django-q2: the ORM broker (this database) unless REDIS_URL is set.
Q_CLUSTER = env.q_cluster(os.environ)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        # INFO: a task changed status, a sweep finished a task or hit errors, a download
        # failed; routine polling and claiming is DEBUG.
        "django_evolink": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # django-q2 logs as "django-q": at INFO it writes two lines per job (the sweep runs
        # every minute); its warnings and errors still show.
        "django-q": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # runserver's line per request: the page asks about a running task every second;
        # 4xx (WARNING) and 5xx (ERROR) answers still show.
        "django.server": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "demo": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
