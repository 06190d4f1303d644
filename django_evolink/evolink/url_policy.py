"""Which URLs may be handed to Evolink or fetched by this site.

Evolink cannot fetch loopback, private or link-local addresses, and this site must
not be tricked into fetching them either (SSRF through result URLs). Both checks
live here; ``ALLOW_PRIVATE_URLS`` relaxes them for local development and tests.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.utils.translation import gettext as _

from .. import conf


def is_private_address(address: str) -> bool:
    """True for loopback, private, link-local, reserved, multicast or unspecified IPs."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"))
    )


def host_is_private(host: str, *, resolve: bool = True) -> bool:
    """True when ``host`` is, or resolves to, any non-public address.

    A name that does not resolve here is not called private: it cannot be fetched
    from this machine anyway, and Evolink (on another network) may resolve it.
    """
    host = (host or "").strip("[]").rstrip(".").lower()
    if not host:
        return True
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    else:
        return is_private_address(host)
    if not resolve:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return any(is_private_address(info[4][0]) for info in infos)


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
