"""Production settings of the example site (``example_project.settings_production``).

Everything secret or site-specific comes from the environment; a missing variable stops
the site at start-up with a message naming it. ``manage.py check --deploy`` passes with:

==============================  =============================================================
variable                        meaning
==============================  =============================================================
``SECRET_KEY``                  Django's secret key (50+ random characters), required
``ALLOWED_HOSTS``               comma-separated host names, e.g. ``www.example.com``, required
``DATABASE_URL``                ``postgres://user:password@host:5432/name``, required
``EVOLINK_API_KEY``             the Evolink key ``sk-evo-...``, required (no emulator here)
``EVOLINK_CALLBACK_BASE_URL``   the site's public https origin; unset: polling only
``REDIS_URL``                   ``redis://host:6379/0``: django-q2 broker and cache (optional)
``CSRF_TRUSTED_ORIGINS``        comma-separated extra origins, e.g. ``https://admin.example.com``
``SECURE_HSTS_SECONDS``         HSTS max-age (default one year; 0 turns HSTS off)
``SECURE_HSTS_PRELOAD``         ``0`` to leave the HSTS preload flag off (default on)
``SECURE_PROXY_SSL_HEADER``     ``0`` when no proxy in front sets X-Forwarded-Proto (default on)
==============================  =============================================================
"""

import os

from django.core.exceptions import ImproperlyConfigured

from . import env
from .settings import *  # noqa: F403
from .settings import BASE_DIR

REQUIRED = ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "EVOLINK_API_KEY")
_missing = [name for name in REQUIRED if not (os.environ.get(name) or "").strip()]
if _missing:
    raise ImproperlyConfigured(
        "example_project.settings_production needs the environment variable(s) "
        + ", ".join(_missing)
        + " (see docs/deployment.md)."
    )


def _csv(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip() not in ("0", "false", "False", "")


DEBUG = False
SECRET_KEY = os.environ["SECRET_KEY"]
ALLOWED_HOSTS = _csv("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = _csv("CSRF_TRUSTED_ORIGINS")

DATABASES = {"default": env.database_from_url(os.environ["DATABASE_URL"],
                                               sqlite_path=BASE_DIR / "db.sqlite3")}
CACHES = env.caches(os.environ)
Q_CLUSTER = env.q_cluster(os.environ)

# The real Evolink: django-evolink reads EVOLINK_API_KEY from the environment itself.
EVOLINK_USES_EMULATOR = False
EXAMPLE_EMULATOR_AUTOSTART = False
EVOLINK = env.evolink_settings(os.environ)

STATIC_ROOT = BASE_DIR / "staticfiles"

# HTTPS. Behind a reverse proxy (nginx, a load balancer) that terminates TLS, the proxy
# must set X-Forwarded-Proto and strip any such header sent by clients.
if _flag("SECURE_PROXY_SSL_HEADER", True):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
# The callback receiver is POSTed to by Evolink over https; the redirect above never
# applies to it because CALLBACK_BASE_URL is https.
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 365 * 24 * 3600))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = _flag("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
