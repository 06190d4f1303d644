"""Which URLs may be handed to Evolink or fetched by this site.

Evolink cannot fetch loopback, private or link-local addresses, and this site must
not be tricked into fetching them either (SSRF through result URLs). Both checks
live here; ``ALLOW_PRIVATE_URLS`` relaxes them for local development and tests. What counts
as a private address or host is decided in :mod:`django_evolink.evolink.addresses`, shared
with the emulator.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.utils.translation import gettext as _

from .. import conf
from .addresses import host_is_private, is_private_address


def check_url(
    url: str,
    *,
    schemes: tuple[str, ...] = ("http", "https"),
    allow_private: bool | None = None,
    resolve: bool = True,
) -> str | None:
    """Return a message saying why ``url`` is not allowed, or ``None`` when it is."""
    if allow_private is None:
        allow_private = bool(conf.get("ALLOW_PRIVATE_URLS"))
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _port = parts.port  # raises ValueError on a malformed port
    except (ValueError, TypeError):
        return _("Not a valid URL.")
    if parts.scheme.lower() not in schemes:
        return _("Only %(schemes)s URLs are allowed.") % {"schemes": "/".join(schemes)}
    if not host:
        return _("The URL has no host.")
    if parts.username or parts.password:
        return _("URLs with credentials are not allowed.")
    if not allow_private and host_is_private(host, resolve=resolve):
        return _(
            "The URL points at a private or loopback address, which Evolink "
            "cannot reach (set EVOLINK['ALLOW_PRIVATE_URLS'] only for local development)."
        )
    return None


__all__ = ["check_url", "host_is_private", "is_private_address"]
