"""Settings for django-evolink, read lazily from ``settings.EVOLINK``.

Every key has a default here; a site sets only what it changes. Values are looked
up on every access (never cached at import time) so ``override_settings`` works in
tests. The lookup order for a key is: an explicit argument (where a function takes
one), then ``settings.EVOLINK[key]``, then the default below. ``API_KEY`` also falls
back to the ``EVOLINK_API_KEY`` environment variable.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .exceptions import EvolinkConfigurationError

if TYPE_CHECKING:
    from django.core.files.storage import Storage

#: The default of every key of ``settings.EVOLINK``. Documented in docs/settings.md.
DEFAULTS: dict[str, Any] = {
    # --- Evolink account and endpoints -------------------------------------------
    "API_KEY": None,  # falls back to the EVOLINK_API_KEY environment variable
    "BASE_URL": "https://api.evolink.ai",
    "FILES_BASE_URL": "https://files-api.evolink.ai",
    "CALLBACK_BASE_URL": None,  # public https origin of this site; None: poll only
    "ALLOW_PRIVATE_URLS": False,  # local development and tests only
    "DEFAULT_MODEL": "wan2.5-image-to-image",
    "MODELS": None,  # None: every image model of the catalogue; or the allowed names
    # --- HTTP client ---------------------------------------------------------------
    "CONNECT_TIMEOUT": 5.0,  # seconds to open a connection to Evolink
    "READ_TIMEOUT": 30.0,  # seconds to wait for an answer once the request is sent
    "MAX_RETRIES": 3,  # retries of a retryable request (never of an unknown create)
    "RETRY_BACKOFF": 0.5,  # base of the jittered exponential backoff, seconds
    "RETRY_MAX_WAIT": 30.0,  # cap on one wait between retries (Retry-After included)
    "POOL_SIZE": 10,  # connections kept per host by the client's session
    # --- Callbacks -------------------------------------------------------------------
    "TRUST_CALLBACK_BODY": False,  # False: a callback is a hint, the task is re-fetched
    # --- Polling (django-q2 sweep) -------------------------------------------------
    "INSTALL_SCHEDULE": True,  # create the recurring sweep Schedule after migrate
    "SWEEP_MINUTES": 1,  # interval of the recurring sweep
    "POLL_MIN_INTERVAL": 5.0,  # seconds; the shortest wait between two polls of a task
    "POLL_MAX_INTERVAL": 300.0,  # seconds; cap of the exponential poll backoff
    "POLL_CALLBACK_GRACE": 30.0,  # extra wait before the first poll when callbacks are on
    "POLL_BATCH_SIZE": 100,  # tasks claimed per batch by one sweep
    "POLL_MAX_TASKS_PER_SWEEP": 1000,  # bound on the work of one sweep
    "POLL_CONCURRENCY": 8,  # parallel status requests in one sweep
    "POLL_LEASE_SECONDS": 120.0,  # a claimed task is not claimed again for this long
    "TASK_TIMEOUT": 3600.0,  # seconds after submission before a task is timed out
    # --- Live updates (watched tasks, event stream) ----------------------------------
    "WATCH_SECONDS": 30.0,  # a detail request / open event stream watches a task this long
    "WATCH_POLL_INTERVAL": 2.0,  # seconds between two polls of a watched task
    "WATCH_LOOP": True,  # run the watch loop (a self-continuing django-q2 job)
    "WATCH_LOOP_SECONDS": 50.0,  # one watch job's run before it hands over to the next
    "EVENTS_CHANNEL": "auto",  # "auto", "postgres", "redis" or "poll": how streams wake up
    "EVENTS_REDIS_URL": None,  # redis://... for the "redis" channel ("auto" uses it when set)
    "EVENTS_POLL_INTERVAL": 1.0,  # seconds between two database checks ("poll" channel)
    "EVENTS_HEARTBEAT_SECONDS": 15.0,  # a comment line this often keeps proxies from closing
    "EVENTS_MAX_SECONDS": 300.0,  # a stream ends after this long; the client reconnects
    # --- Submission ------------------------------------------------------------------
    "ASYNC_SUBMIT": False,  # True: create_task saves `queued`, a worker submits
    # --- Storage of inputs and results ---------------------------------------------
    "STORAGE": None,  # alias in settings.STORAGES; None: "default"
    "RESULTS_PATH": "evolink/results",  # prefix of stored result images
    "INPUTS_PATH": "evolink/inputs",  # prefix of stored input images
    "DOWNLOAD_MAX_BYTES": 50 * 1024 * 1024,  # refuse result images larger than this
    "DOWNLOAD_MAX_PIXELS": 40_000_000,  # refuse results with more pixels, before decoding
    "DOWNLOAD_TIMEOUT": 30.0,  # seconds: bounds each read and the whole of one image's body
    "DOWNLOAD_RETRY_HOURS": 23.0,  # retry downloads until the 24 h link would expire
    "DOWNLOAD_BACKOFF": 30.0,  # seconds before the 1st download retry, doubled per attempt
    "DOWNLOAD_BACKOFF_MAX": 3600.0,  # cap on the wait between two download attempts
    "DOWNLOAD_LEASE_SECONDS": 300.0,  # a download in progress is not started again this long
    # --- Uploaded inputs ---------------------------------------------------------------
    "UPLOAD_BACKEND": "evolink",  # "evolink" (files API) or "storage" (public media URL)
    "UPLOAD_URL_BASE": None,  # with "storage": absolute origin for relative media URLs
    # --- REST API --------------------------------------------------------------------
    "PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "THROTTLE_CLASSES": ["django_evolink.api.throttles.EvolinkScopedRateThrottle"],
    "THROTTLE_RATES": {"evolink_create": "30/minute", "evolink_refresh": "60/minute"},
    "PAGE_SIZE": 20,
    # --- Spending limits (docs/limits.md) -------------------------------------------
    "LIMITS": {  # None = unlimited; checked before anything is sent to Evolink
        "ACTIVE_TASKS_PER_USER": None,  # unfinished tasks one user may have at once
        "CREDITS_PER_USER_PER_DAY": None,  # credits one user may reserve in 24 h
        "CREDITS_PER_DAY": None,  # credits the whole site may reserve in 24 h
    },
    "LIMITS_POLICY": None,  # dotted path of a callable(user, request) -> limits dict
    "DEFAULT_IMAGE_CREDITS": 1,  # estimated credits per image before a price is known
    # --- Retention -------------------------------------------------------------------
    "RETENTION_DAYS": None,  # None: keep forever; evolink_purge takes --older-than
}


def _user_settings() -> dict[str, Any]:
    value = getattr(settings, "EVOLINK", None) or {}
    if not isinstance(value, dict):
        raise EvolinkConfigurationError(
            "settings.EVOLINK must be a dict, e.g. EVOLINK = {'API_KEY': ...}."
        )
    return value


def get(key: str) -> Any:
    """Return the effective value of ``settings.EVOLINK[key]``.

    Unknown keys raise ``KeyError`` so a typo in our own code fails loudly.
    """
    if key not in DEFAULTS:
        raise KeyError(f"Unknown django-evolink setting {key!r}")
    user = _user_settings()
    if key == "API_KEY":
        # an explicit None (or "") falls back to the environment, as documented
        return user.get("API_KEY") or os.environ.get("EVOLINK_API_KEY") or None
    if key in user:
        return user[key]
    return DEFAULTS[key]


def api_key() -> str | None:
    """The API key, from ``EVOLINK['API_KEY']`` or ``$EVOLINK_API_KEY``; never logged."""
    key: str | None = get("API_KEY")
    return key


def unknown_keys() -> list[str]:
    """Keys of ``settings.EVOLINK`` that django-evolink does not know (typos)."""
    return sorted(k for k in _user_settings() if k not in DEFAULTS)


def storage() -> Storage:
    """The storage that keeps input copies and result images."""
    from django.core.files.storage import storages

    return storages[get("STORAGE") or "default"]


def import_classes(key: str) -> list[type]:
    """Import the dotted paths listed under ``key`` (permission/throttle classes)."""
    from django.utils.module_loading import import_string

    return [import_string(p) if isinstance(p, str) else p for p in get(key)]
