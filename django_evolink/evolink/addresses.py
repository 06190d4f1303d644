"""Is a host or an IP address private? One answer for the site and the emulator.

Pure standard library, no Django and no settings: :mod:`django_evolink.netsafety` builds its
URL policy on these functions and the emulator (which runs without Django) refuses internal
image and callback URLs with them.

An address is private when it is loopback, private, link-local, carrier-grade NAT
(100.64.0.0/10), reserved, multicast or unspecified; an IPv4-mapped IPv6 address
(``::ffff:127.0.0.1``) is judged by its IPv4 address, and an IPv6 zone id
(``fe80::1%eth0``) is ignored. Hosts are also read the way ``getaddrinfo`` and browsers read
them, so that ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1`` are all
127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import socket
import string

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Shared address space of carrier-grade NAT (RFC 6598): not public, yet not ``is_private``.
CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")

_DIGITS = {8: frozenset(string.octdigits), 10: frozenset(string.digits),
           16: frozenset(string.hexdigits)}


def _ipv4_number(part: str) -> int | None:
    """One dot-separated part of an IPv4 host: decimal, ``0x`` hex or ``0``-led octal."""
    base = 10
    if part[:2].lower() == "0x":
        base, part = 16, part[2:]
        if not part:
            return 0
    elif len(part) > 1 and part.startswith("0"):
        base, part = 8, part[1:]
    if not part or not set(part) <= _DIGITS[base]:
        return None
    return int(part, base)


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` read as an IPv4 address in any form ``inet_aton`` accepts, or None.

    One to four parts, each decimal, hex (``0x7f``) or octal (``0177``); the last part
    fills the bytes left (``127.1`` is 127.0.0.1, ``2130706433`` is 127.0.0.1).
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if None in numbers:
        return None
    *head, last = [n for n in numbers if n is not None]
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for shift, number in enumerate(reversed(head), start=4 - len(head)):
        value |= number << (8 * shift)
    return ipaddress.IPv4Address(value)


def parse_address(address: str) -> IPAddress | None:
    """``address`` as an IP address (zone id dropped, IPv4 in any form), or None."""
    address = address.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return parse_ipv4(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_private_address(address: str) -> bool:
    """True for loopback, private, link-local, CGNAT, reserved, multicast or unspecified IPs.

    Something that is not an IP address at all counts as private (refused), so that a
    caller handing over a peer address it could not read fails closed.
    """
    ip = parse_address(address)
    if ip is None:
        return True
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv4Address) and ip in CARRIER_GRADE_NAT)
    )


def host_is_private(host: str, *, resolve: bool = True) -> bool:
    """True when ``host`` is, or resolves to, any non-public address.

    ``localhost`` and ``*.localhost`` are private without a lookup. A name is resolved only
    with ``resolve`` (A and AAAA records alike); a name that does not resolve here is not
    called private: it cannot be fetched from this machine anyway, and Evolink (on another
    network) may resolve it.
    """
    host = (host or "").strip("[]").rstrip(".").lower()
    if not host:
        return True
    if host == "localhost" or host.endswith(".localhost"):
        return True
    if parse_address(host) is not None:
        return is_private_address(host)
    if not resolve:
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return any(is_private_address(str(info[4][0])) for info in infos)


__all__ = ["CARRIER_GRADE_NAT", "host_is_private", "is_private_address", "parse_address",
           "parse_ipv4"]
