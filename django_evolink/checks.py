"""Django system checks for django-evolink (ids ``django_evolink.E001`` ...).

| id | level | what |
| E001 | error | ``settings.EVOLINK`` is not a dict |
| W001 | warning | no API key |
| W002 | warning | unknown keys in ``settings.EVOLINK`` (typos) |
| E002 | error | ``CALLBACK_BASE_URL`` is not an https origin |
| E003 | error | ``CALLBACK_BASE_URL`` points at a private/loopback address |
| E004 | error | a required app is missing from INSTALLED_APPS |
| E005 | error | a setting has a value of the wrong type or range |
| W003 | warning | django-q2 ``retry`` is not larger than ``timeout`` (tasks run twice) |
| W004 | warning | the recurring poll schedule is missing |
| E006 | error | ``MODELS`` or ``DEFAULT_MODEL`` names a model that is not an allowed image model |
| W010 | warning | an ``http://`` ``CALLBACK_BASE_URL`` (``ALLOW_PRIVATE_URLS``): emulator only |
| W011 | warning | file storage without ``MEDIA_ROOT``/``MEDIA_URL``: results not served |
| W012 | warning | the storage's URLs fall under the app's own URL prefix (they would 404) |
| W013 | warning | django-q2 ``timeout``/``retry`` missing, or ``timeout`` shorter than a job |
| E007 | error | ``LIMITS``, ``LIMITS_POLICY`` or ``DEFAULT_IMAGE_CREDITS`` is not allowed |
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.files.storage import FileSystemStorage, InvalidStorageError
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from . import conf
from .background import downloads, schedule
from .core import limits
from .evolink import catalogue, modelspec, url_policy

_NUMERIC_KEYS = (
    "CONNECT_TIMEOUT", "READ_TIMEOUT", "RETRY_BACKOFF", "RETRY_MAX_WAIT", "POLL_MIN_INTERVAL",
    "POLL_MAX_INTERVAL", "POLL_CALLBACK_GRACE", "POLL_LEASE_SECONDS", "TASK_TIMEOUT",
    "DOWNLOAD_TIMEOUT", "DOWNLOAD_RETRY_HOURS", "DOWNLOAD_BACKOFF", "DOWNLOAD_BACKOFF_MAX",
    "DOWNLOAD_LEASE_SECONDS", "WATCH_SECONDS", "WATCH_POLL_INTERVAL", "WATCH_LOOP_SECONDS",
    "EVENTS_POLL_INTERVAL", "EVENTS_HEARTBEAT_SECONDS", "EVENTS_MAX_SECONDS",
)
_INT_KEYS = ("MAX_RETRIES", "POOL_SIZE", "POLL_BATCH_SIZE", "POLL_MAX_TASKS_PER_SWEEP",
             "POLL_CONCURRENCY", "SWEEP_MINUTES", "PAGE_SIZE", "DOWNLOAD_MAX_BYTES",
             "DOWNLOAD_MAX_PIXELS")


@register(Tags.compatibility)
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    user = getattr(settings, "EVOLINK", None)
    if user is not None and not isinstance(user, dict):
        return [Error(_("settings.EVOLINK must be a dict."), hint="EVOLINK = {'API_KEY': ...}",
                      id="django_evolink.E001")]
    if not conf.api_key():
        errors.append(Warning(
            _("No Evolink API key is configured; requests to Evolink will fail."),
            hint=_("Set EVOLINK = {'API_KEY': 'sk-evo-...'} in settings or the "
                   "EVOLINK_API_KEY environment variable."),
            id="django_evolink.W001",
        ))
    unknown = conf.unknown_keys()
    if unknown:
        errors.append(Warning(
            _("Unknown key(s) in settings.EVOLINK: %(keys)s.") % {"keys": ", ".join(unknown)},
            hint=_("Check the spelling; known keys: %(known)s.")
            % {"known": ", ".join(sorted(conf.DEFAULTS))},
            id="django_evolink.W002",
        ))
    callback = conf.get("CALLBACK_BASE_URL")
    if callback:
        parts = urlsplit(str(callback))
        allow_private = bool(conf.get("ALLOW_PRIVATE_URLS"))
        if parts.scheme != "https" and not allow_private:
            errors.append(Error(
                _("EVOLINK['CALLBACK_BASE_URL'] must be an https origin: Evolink only "
                  "delivers callbacks over HTTPS."),
                hint=_("Use e.g. 'https://www.example.com', or None to rely on polling."),
                id="django_evolink.E002",
            ))
        elif parts.scheme != "https":
            errors.append(Warning(
                _("EVOLINK['CALLBACK_BASE_URL'] (%(url)s) is not an https origin; it is "
                  "accepted only because ALLOW_PRIVATE_URLS is on.") % {"url": callback},
                hint=_("Evolink refuses http:// callback URLs: only the emulator accepts "
                       "them. Use the site's public https origin with the real service, or "
                       "None to rely on polling."),
                id="django_evolink.W010",
            ))
        elif not parts.hostname:
            errors.append(Error(_("EVOLINK['CALLBACK_BASE_URL'] has no host."),
                                hint=_("Use e.g. 'https://www.example.com'."),
                                id="django_evolink.E002"))
        elif not allow_private and url_policy.host_is_private(parts.hostname, resolve=False):
            errors.append(Error(
                _("EVOLINK['CALLBACK_BASE_URL'] points at a private or loopback address, "
                  "which Evolink refuses to call."),
                hint=_("Use the site's public origin, or None to rely on polling "
                       "(ALLOW_PRIVATE_URLS=True only for local development)."),
                id="django_evolink.E003",
            ))
    for key in _NUMERIC_KEYS:
        value = conf.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            errors.append(Error(_("EVOLINK['%(key)s'] must be a number >= 0 (got %(value)r).")
                                % {"key": key, "value": value},
                                id="django_evolink.E005"))
    for key in _INT_KEYS:
        value = conf.get(key)
        least = 0 if key == "MAX_RETRIES" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            errors.append(Error(
                _("EVOLINK['%(key)s'] must be a whole number >= %(least)d (got %(value)r).")
                % {"key": key, "least": least, "value": value},
                id="django_evolink.E005",
            ))
    channel = conf.get("EVENTS_CHANNEL")
    if channel not in ("auto", "postgres", "redis", "poll"):
        errors.append(Error(
            _("EVOLINK['EVENTS_CHANNEL'] must be 'auto', 'postgres', 'redis' or 'poll' "
              "(got %(value)r).") % {"value": channel},
            id="django_evolink.E005",
        ))
    elif channel == "redis" and not conf.get("EVENTS_REDIS_URL"):
        errors.append(Error(
            _("EVOLINK['EVENTS_CHANNEL'] is 'redis' but EVOLINK['EVENTS_REDIS_URL'] is not set."),
            hint=_("Set e.g. EVOLINK['EVENTS_REDIS_URL'] = 'redis://127.0.0.1:6379/0', or use "
                   "'auto'."),
            id="django_evolink.E005",
        ))
    if conf.get("UPLOAD_BACKEND") not in ("evolink", "storage"):
        errors.append(Error(_("EVOLINK['UPLOAD_BACKEND'] must be 'evolink' or 'storage'."),
                            id="django_evolink.E005"))
    for app in ("rest_framework", "django_q"):
        if not apps.is_installed(app):
            errors.append(Error(_("'%(app)s' must be in INSTALLED_APPS for django_evolink.")
                                % {"app": app},
                                id="django_evolink.E004"))
    return errors


@register(Tags.compatibility)
def check_limits(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``LIMITS`` holds only the three limits, each None or a number >= 0;
    ``LIMITS_POLICY`` names a callable; ``DEFAULT_IMAGE_CREDITS`` is a number >= 0."""
    if not isinstance(getattr(settings, "EVOLINK", None) or {}, dict):
        return []  # E001 says so
    hint = _("Write e.g. EVOLINK['LIMITS'] = {'ACTIVE_TASKS_PER_USER': 5, "
             "'CREDITS_PER_USER_PER_DAY': 50, 'CREDITS_PER_DAY': 1000}; None means no limit.")
    errors: list[CheckMessage] = [
        Error(f"EVOLINK['LIMITS']: {text}", hint=hint, id="django_evolink.E007")
        for text in limits.limit_errors(conf.get("LIMITS"))
    ]
    policy = conf.get("LIMITS_POLICY")
    if policy is not None and not callable(policy):
        try:
            found = import_string(policy) if isinstance(policy, str) else policy
        except ImportError as exc:
            found, problem = None, str(exc)
        else:
            problem = _("it is not callable")
        if not callable(found):
            errors.append(Error(
                _("EVOLINK['LIMITS_POLICY'] = %(value)r cannot be used: %(problem)s.")
                % {"value": policy, "problem": problem},
                hint=_("Name a callable(user, request) that returns None or a dict of "
                       "limits by its dotted path, e.g. 'mysite.limits.for_user'."),
                id="django_evolink.E007",
            ))
    price = conf.get("DEFAULT_IMAGE_CREDITS")
    if isinstance(price, bool) or not isinstance(price, (int, float, Decimal)) or price < 0:
        errors.append(Error(
            _("EVOLINK['DEFAULT_IMAGE_CREDITS'] must be a number of credits >= 0 (got "
              "%(value)r).") % {"value": price},
            hint=_("The credits one image is estimated to cost before Evolink has reported "
                   "a price for its model, e.g. 1."),
            id="django_evolink.E007",
        ))
    return errors


def _model_hint(name: object) -> str:
    """A hint for a model name that is not an image model of the catalogue."""
    known = modelspec.load().models.get(name) if isinstance(name, str) else None
    if known is not None:
        return _("%(name)s is a %(kind)s model; django-evolink creates image tasks only. "
                 "See docs/models.md for the image models.") % {
                     "name": name, "kind": catalogue.kind_word(known.kind)}
    close = difflib.get_close_matches(str(name), list(catalogue.CATALOGUE), n=3)
    if close:
        return _("Did you mean %(names)s?") % {"names": ", ".join(repr(c) for c in close)}
    return _("The image models are listed in docs/models.md and by 'manage.py evolink_models'.")


@register(Tags.compatibility)
def check_models(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E006: ``MODELS`` and ``DEFAULT_MODEL`` name image models of the catalogue."""
    errors: list[CheckMessage] = []
    if not isinstance(getattr(settings, "EVOLINK", None) or {}, dict):
        return []  # E001 says it
    chosen = conf.get("MODELS")
    if chosen is not None and (isinstance(chosen, str) or not all(
            isinstance(m, str) for m in chosen)):
        return [Error(_("EVOLINK['MODELS'] must be None or a list of model names."),
                      hint=_("e.g. %(example)s")
                      % {"example": "['wan2.5-image-to-image', 'wan2.5-text-to-image']"},
                      id="django_evolink.E006")]
    for name in chosen or ():
        if name not in catalogue.CATALOGUE:
            errors.append(Error(_("EVOLINK['MODELS'] names %(name)r, which is not an image "
                                  "model of the catalogue.") % {"name": name},
                                hint=_model_hint(name),
                                id="django_evolink.E006"))
    default = conf.get("DEFAULT_MODEL")
    if default not in catalogue.CATALOGUE:
        errors.append(Error(_("EVOLINK['DEFAULT_MODEL'] %(name)r is not an image model of "
                              "the catalogue.") % {"name": default},
                            hint=_model_hint(default),
                            id="django_evolink.E006"))
    elif chosen is not None and default not in chosen:
        errors.append(Error(_("EVOLINK['DEFAULT_MODEL'] %(name)r is not in "
                              "EVOLINK['MODELS'], so a request that names no model is "
                              "refused.") % {"name": default},
                            hint=_("Add %(name)r to MODELS, or choose a DEFAULT_MODEL "
                                   "among them.") % {"name": default},
                            id="django_evolink.E006"))
    return errors


#: django-q2's own default of ``Q_CLUSTER["retry"]`` (seconds).
DJANGO_Q_DEFAULT_RETRY = 60


def longest_job_seconds() -> int:
    """Seconds the longest django-evolink job may run: a download job stores up to ``n``
    images (the largest ``n`` of the allowed models), fetched
    :data:`~django_evolink.background.downloads.PARALLEL_DOWNLOADS` at a time, each
    bounded by ``CONNECT_TIMEOUT + DOWNLOAD_TIMEOUT``; a submit job by
    ``CONNECT_TIMEOUT + READ_TIMEOUT``."""
    specs = [catalogue.CATALOGUE[name] for name in catalogue.allowed_models()]
    images = max([spec.n_max or spec.n_min or 1 for spec in specs] or [1])
    rounds = math.ceil(images / downloads.PARALLEL_DOWNLOADS)
    connect = float(conf.get("CONNECT_TIMEOUT"))
    download = rounds * (connect + float(conf.get("DOWNLOAD_TIMEOUT")))
    submit = connect + float(conf.get("READ_TIMEOUT"))
    return math.ceil(max(download, submit))


@register(Tags.compatibility)
def check_django_q(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W003 (``retry`` not above ``timeout``) and W013 (missing or too short)."""
    q = getattr(settings, "Q_CLUSTER", {}) or {}
    if not isinstance(q, dict):
        return []
    timeout, retry = q.get("timeout"), q.get("retry")
    numbers = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                  for v in (timeout, retry))
    if not numbers:
        return [Warning(_("Q_CLUSTER['timeout'] and Q_CLUSTER['retry'] must be numbers of "
                          "seconds (got %(timeout)r and %(retry)r).")
                        % {"timeout": timeout, "retry": retry},
                        hint=_("e.g. 'timeout': 600, 'retry': 660."),
                        id="django_evolink.W013")]
    try:
        evolink_ok = isinstance(getattr(settings, "EVOLINK", None) or {}, dict)
        needed = longest_job_seconds() if evolink_ok else None  # else E001 says it
    except (TypeError, ValueError):
        needed = None  # a bad EVOLINK value: E005 says it
    suggestion = max(needed or 0, 60)
    example = {"timeout": suggestion, "retry": suggestion + 60}
    if not timeout:
        return [Warning(
            _("Q_CLUSTER has no 'timeout': django-q2 warns \"Retry and timeout are "
              "misconfigured\" on every command and never stops a job that hangs."),
            hint=_("Add 'timeout': %(timeout)s and 'retry': %(retry)s to Q_CLUSTER (retry "
                   "must be larger than timeout).") % example,
            id="django_evolink.W013",
        )]
    effective_retry = DJANGO_Q_DEFAULT_RETRY if retry is None else retry  # django-q2's default
    if effective_retry <= timeout:
        return [Warning(
            _("Q_CLUSTER['retry'] (%(retry)s) is not larger than Q_CLUSTER['timeout'] "
              "(%(timeout)s): django-q2 would hand a still-running task to a second worker.")
            % {"retry": effective_retry, "timeout": timeout},
            hint=_("Set retry to more than timeout, e.g. timeout=%(timeout)s, "
                   "retry=%(retry)s.") % {"timeout": timeout, "retry": timeout + 60},
            id="django_evolink.W003",
        )]
    if needed is not None and timeout < needed:
        return [Warning(
            _("Q_CLUSTER['timeout'] (%(timeout)s s) is shorter than a django-evolink job can "
              "take (%(needed)s s: a download of the largest allowed number of images, "
              "%(parallel)s at a time, each bounded by EVOLINK['CONNECT_TIMEOUT'] + "
              "EVOLINK['DOWNLOAD_TIMEOUT']); such a job would be killed.")
            % {"timeout": timeout, "needed": needed,
               "parallel": downloads.PARALLEL_DOWNLOADS},
            hint=_("Set 'timeout': %(timeout)s and 'retry': %(retry)s, or lower "
                   "DOWNLOAD_TIMEOUT or the allowed MODELS.") % example,
            id="django_evolink.W013",
        )]
    return []


@register(Tags.compatibility)
def check_media(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W011/W012: the result images would be stored where no URL serves them."""
    if not isinstance(getattr(settings, "EVOLINK", None) or {}, dict):
        return []
    try:
        storage = conf.storage()
    except InvalidStorageError:
        return [Error(_("EVOLINK['STORAGE'] names %(alias)r, which is not in "
                        "settings.STORAGES.") % {"alias": conf.get("STORAGE")},
                      hint=_("Use an alias of settings.STORAGES, or None for 'default'."),
                      id="django_evolink.E005")]
    # Django reads an empty MEDIA_URL as the script prefix ("/"): the site's root.
    no_media_url = str(settings.MEDIA_URL or "") in ("", "/")
    if isinstance(storage, FileSystemStorage) and (not settings.MEDIA_ROOT or no_media_url):
        return [Warning(
            _("MEDIA_ROOT or MEDIA_URL is not set: result images would be written below "
              "the current directory and the URLs the API answers would not load."),
            hint=_("Set MEDIA_ROOT = BASE_DIR / 'media' and MEDIA_URL = '/media/', and in "
                   "development add static(settings.MEDIA_URL, "
                   "document_root=settings.MEDIA_ROOT) to urlpatterns (see "
                   "docs/installation.md)."),
            id="django_evolink.W011",
        )]
    try:
        sample = storage.url(f"{str(conf.get('RESULTS_PATH')).rstrip('/')}/1/0.png")
        api_root = reverse("evolink:task-list")
    except (NoReverseMatch, NotImplementedError, ValueError, TypeError):
        return []  # the app is not routed (yet), or the storage has no URLs
    parts = urlsplit(sample)
    if parts.netloc:
        return []  # served by another host (a CDN, S3, ...)
    prefix = api_root[: -len("tasks/")] if api_root.endswith("tasks/") else api_root
    path = parts.path if parts.path.startswith("/") else "/" + parts.path
    if prefix and prefix != "/" and path.startswith(prefix):
        return [Warning(
            _("Stored result images get URLs under %(prefix)s (e.g. %(url)s), the URL prefix "
              "of django_evolink's own views, which do not serve files: they would 404.")
            % {"prefix": prefix, "url": sample},
            hint=_("Give the storage its own URL, e.g. MEDIA_URL = '/media/'."),
            id="django_evolink.W012",
        )]
    return []


@register(Tags.database)
def check_schedule(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """W004: the recurring sweep is not installed although django-q2's tables exist.

    Tagged ``database``: it runs only when checks are asked to look at a database
    (``migrate``, ``check --database default``), never at import.
    """
    from django.db import DatabaseError


    if not databases or not apps.is_installed("django_q"):
        return []
    warnings: list[CheckMessage] = []
    for alias in databases:
        try:
            if not schedule.schedule_table_exists(alias):
                continue  # django-q2 not migrated yet: nothing to say
            if schedule.find_schedule(alias) is not None:
                continue
        except DatabaseError:
            continue
        reason = (
            _("EVOLINK['INSTALL_SCHEDULE'] is False")
            if not conf.get("INSTALL_SCHEDULE")
            else _("migrations ran without installing it")
        )
        warnings.append(Warning(
            _("The django-evolink poll sweep schedule (%(func)s) is missing on database "
              "'%(alias)s' (%(reason)s): tasks whose callback is lost never finish and "
              "result images are not retried.")
            % {"func": schedule.SWEEP_FUNC, "alias": alias, "reason": reason},
            hint=_("Run 'manage.py evolink_install_schedule', or create the Schedule "
                   "yourself."),
            id="django_evolink.W004",
        ))
    return warnings
