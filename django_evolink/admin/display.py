"""How the admin shows things: badges, progress bars, thumbnails, pretty JSON, link states.

Everything shown passes through :func:`safe_text` or :func:`redact_data` first, so an API
key, a bearer token or a callback secret never reaches a page.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext

from .. import conf
from ..background.downloads import can_download, download_deadline
from ..core.credits import format_credits
from ..core.models import GeneratedImage, ImageTask, Status
from ..exceptions import redact

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

logger = logging.getLogger("django_evolink.admin")

#: Header and payload keys whose values are never shown (matched case-insensitively).
SECRET_KEY_PATTERN = re.compile(
    r"authori[sz]ation|cookie|token|secret|signature|password|passwd|api[-_]?key|"
    r"credential|callback[-_]?url|session",
    re.IGNORECASE,
)
REDACTED = "[redacted]"

#: CSS class of each status badge.
STATUS_CLASSES: dict[str, str] = {
    Status.QUEUED: "queued",
    Status.PENDING: "pending",
    Status.PROCESSING: "processing",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "cancelled",
}

__all__ = [
    "REDACTED",
    "SECRET_KEY_PATTERN",
    "STATUS_CLASSES",
    "format_credits",
    "image_size",
    "image_url",
    "input_url",
    "link_expiry",
    "link_state",
    "local_time",
    "muted",
    "pretty_json",
    "progress_bar",
    "redact_data",
    "safe_text",
    "status_badge",
    "storage_url",
    "thumbnail",
    "user_label",
]


# ------------------------------------------------------------------------ redaction


def redact_data(value: Any, secret: str | None = None) -> Any:
    """A copy of ``value`` (JSON data) with secrets removed.

    Values under keys that name a secret (``Authorization``, ``Cookie``, ``token``,
    ``callback_url``, ...) are replaced by ``[redacted]``; every string is passed
    through :func:`~django_evolink.exceptions.redact` (API keys, bearer tokens and
    ``secret`` itself).
    """
    if isinstance(value, dict):
        cleaned = {}
        for key, item in value.items():
            if isinstance(key, str) and SECRET_KEY_PATTERN.search(key) and item not in (None, ""):
                cleaned[key] = REDACTED
            else:
                cleaned[key] = redact_data(item, secret)
        return cleaned
    if isinstance(value, (list, tuple)):
        return [redact_data(item, secret) for item in value]
    if isinstance(value, str):
        return redact(value, secret)
    return value


def pretty_json(value: Any) -> SafeString:
    """``value`` as indented JSON in a ``<pre>``, secrets redacted."""
    if value is None or value == {} or value == []:
        return muted(gettext("(empty)"))
    secret = conf.api_key()
    text = json.dumps(
        redact_data(value, secret), indent=2, sort_keys=True, ensure_ascii=False, default=str
    )
    return format_html('<pre class="evolink-json">{}</pre>', redact(text, secret))


def safe_text(value: Any) -> str:
    """``value`` as text with secrets redacted (for anything shown on a page)."""
    return redact(str(value), conf.api_key()) if value else ""


# ------------------------------------------------------------------------ small parts


def muted(text: str) -> SafeString:
    """``text`` greyed out (placeholders such as a dash or "not stored yet")."""
    return format_html('<span class="evolink-muted">{}</span>', text)


def local_time(value: dt.datetime) -> str:
    """``value`` in the site's time zone, to the minute."""
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


def user_label(user: Any) -> str:
    """The user name of ``user`` ("" for no user)."""
    if user is None:
        return ""
    return str(user.get_username() if hasattr(user, "get_username") else user)


def status_badge(status: str, label: StrOrPromise | None = None) -> SafeString:
    """A coloured badge for a task status."""
    if not status:
        return muted("–")
    if label is None:
        try:
            label = Status(status).label
        except ValueError:
            label = status
    return format_html(
        '<span class="evolink-badge evolink-status-{}">{}</span>',
        STATUS_CLASSES.get(status, "unknown"),
        label,
    )


def progress_bar(progress: int, status: str) -> SafeString:
    """A progress bar (0..100 %) coloured by the task's status."""
    value = max(0, min(100, int(progress or 0)))
    return format_html(
        '<span class="evolink-progress evolink-progress-{}" title="{}%" role="progressbar" '
        'aria-valuenow="{}" aria-valuemin="0" aria-valuemax="100">'
        '<span class="evolink-progress-bar" style="width: {}%"></span></span>'
        '<span class="evolink-progress-label">{}%</span>',
        STATUS_CLASSES.get(status, "unknown"),
        value,
        value,
        value,
        value,
    )


# ------------------------------------------------------------------------ images


def thumbnail(url: str | None, *, size: str = "small", link: bool = True,
              title: str = "") -> SafeString:
    """An ``<img>`` thumbnail of ``url`` (linked to the image), or a dash."""
    if not url:
        return muted("–")
    url = safe_text(url)
    img = format_html(
        '<img src="{}" class="evolink-thumb evolink-thumb-{}" alt="{}" title="{}" '
        'loading="lazy" referrerpolicy="no-referrer">',
        url,
        size,
        title,
        title,
    )
    if not link:
        return img
    return format_html(
        '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>', url, img
    )


def storage_url(name: str) -> str | None:
    """The URL of a stored input copy, or None when the storage cannot tell."""
    try:
        return conf.storage().url(name)
    except Exception:  # a storage without URLs, or a misconfigured one
        logger.debug("no URL for stored file %r", name, exc_info=True)
        return None


def input_url(task: ImageTask) -> str | None:
    """The URL of the stored copy of the first input of ``task``, or None.

    Never one of the client's ``image_urls``: those are arbitrary third-party URLs
    (internal host names included), and an ``<img>`` of one would make every staff
    browser fetch it and reveal its address. They are shown as text only.
    """
    files = task.input_files or []
    if files and isinstance(files[0], str):
        return storage_url(files[0])
    return None


def image_url(image: GeneratedImage | None) -> str | None:
    """The stored copy's URL, else Evolink's link while it can still be fetched."""
    if image is None:
        return None
    if image.file:
        try:
            return image.file.url
        except Exception:
            logger.debug("no URL for stored image %s", image.pk, exc_info=True)
    if can_download(image):
        return image.source_url
    return None


def image_size(image: GeneratedImage) -> str:
    """``"1024×768"``, or a dash while the size is unknown."""
    return f"{image.width}×{image.height}" if image.width and image.height else "–"


def link_state(image: GeneratedImage) -> str:
    """The state of Evolink's link: "alive", "expired", or "expiry unknown" (alive, no expiry).

    Alive means :func:`~django_evolink.background.downloads.can_download`: the same rule
    the downloads follow.
    """
    if not can_download(image):
        return gettext("expired")
    return gettext("alive") if image.source_expires_at else gettext("expiry unknown")


def link_expiry(image: GeneratedImage) -> str:
    """Like :func:`link_state`, with the time downloads stop trying (their deadline)."""
    when = {"when": local_time(download_deadline(image))}
    if not can_download(image):
        return gettext("expired %(when)s") % when
    if image.source_expires_at is None:
        return gettext("expiry unknown")
    return gettext("expires %(when)s") % when
