"""Tests of django_evolink.evolink.addresses: which addresses and hosts are private.

No network: name resolution is faked with ``unittest.mock.patch("socket.getaddrinfo")``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from unittest import mock

import pytest

from django_evolink.evolink.addresses import (
    host_is_private,
    is_private_address,
    parse_address,
    parse_ipv4,
)

PRIVATE = {
    "loopback v4": "127.0.0.1",
    "loopback v4, other": "127.8.9.10",
    "loopback v6": "::1",
    "private 10/8": "10.1.2.3",
    "private 172.16/12": "172.31.255.255",
    "private 192.168/16": "192.168.1.1",
    "unique local v6": "fc00::1",
    "link-local v4 (cloud metadata)": "169.254.169.254",
    "link-local v6": "fe80::1",
    "carrier-grade nat, first": "100.64.0.0",
    "carrier-grade nat, last": "100.127.255.255",
    "reserved": "240.0.0.1",
    "broadcast": "255.255.255.255",
    "multicast v4": "224.0.0.1",
    "multicast v6": "ff02::1",
    "unspecified v4": "0.0.0.0",  # noqa: S104
    "unspecified v6": "::",
    "ipv4-mapped loopback": "::ffff:127.0.0.1",
    "ipv4-mapped private, hex": "::ffff:a00:1",
    "zone id, link-local": "fe80::1%eth0",
    "zone id, loopback": "::1%lo",
    "integer": "2130706433",
    "hex": "0x7f000001",
    "hex parts": "0x7f.0x0.0x0.0x1",
    "octal": "0177.0.0.1",
    "octal integer": "017700000001",
    "short dotted": "127.1",
    "short dotted, three parts": "10.0.1",
    "mixed forms": "0x7f.1",
}

PUBLIC = {
    "public v4": "8.8.8.8",
    "public v4, near 172.16/12": "172.32.0.1",
    "public v4, next to carrier-grade nat": "100.128.0.1",
    "public v6": "2001:4860:4860::8888",
    "ipv4-mapped public": "::ffff:8.8.8.8",
    "public, integer": "134744072",
    "public, hex": "0x08080808",
}


@pytest.mark.parametrize("address", PRIVATE.values(), ids=PRIVATE.keys())
def test_private_addresses(address):
    assert is_private_address(address)
    assert host_is_private(address, resolve=False)


@pytest.mark.parametrize("address", PUBLIC.values(), ids=PUBLIC.keys())
def test_public_addresses(address):
    assert not is_private_address(address)
    assert not host_is_private(address, resolve=False)


def test_what_is_not_an_address_counts_as_private():
    for text in ("", "example.com", "1.2.3.4.5", "256.1.1.1", "08.1.1.1", "1_0"):
        assert is_private_address(text), text


@pytest.mark.parametrize("text,expected", [
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F.0.0.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("1.16777215", "1.255.255.255"),
    ("4294967295", "255.255.255.255"),
    ("1.2.3.4.5", None),
    ("256.1.1.1", None),
    ("1.16777216", None),
    ("4294967296", None),
    ("08.1.1.1", None),
    ("1..1", None),
    ("1.", None),
    ("1_0", None),
    ("cafe", None),
])
def test_ipv4_forms_are_read_as_inet_aton_reads_them(text, expected):
    parsed = parse_ipv4(text)
    assert (None if parsed is None else str(parsed)) == expected
    try:
        native = str(socket.inet_ntoa(socket.inet_aton(text)))
    except OSError:
        native = None
    assert native == expected


def test_parse_address_drops_zone_ids_and_unmaps_ipv4():
    assert str(parse_address("fe80::1%eth0")) == "fe80::1"
    assert str(parse_address("[::ffff:127.0.0.1]")) == "127.0.0.1"
    assert parse_address("example.com") is None


@pytest.mark.parametrize("host", [
    "localhost", "LOCALHOST", "localhost.", "app.localhost", "a.b.localhost.", "[::1]",
    "[fe80::1%25eth0]", "", "127.0.0.1.",
])
def test_private_hosts_without_lookup(host):
    with mock.patch("socket.getaddrinfo") as getaddrinfo:
        assert host_is_private(host)
    getaddrinfo.assert_not_called()


def _aaaa(*addresses: str) -> list[tuple]:
    return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, 0, 0, 0)) for a in addresses]


def _a(*addresses: str) -> list[tuple]:
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in addresses]


@pytest.mark.parametrize("answers", [_aaaa("::1"), _aaaa("fc00::1"), _aaaa("fe80::1%eth0"),
                                     _aaaa("2001:db8::1", "::1")])
def test_a_name_resolving_only_to_private_aaaa_records_is_private(answers):
    with mock.patch("socket.getaddrinfo", return_value=answers) as getaddrinfo:
        assert host_is_private("intranet.example.com")
    getaddrinfo.assert_called_once()
    assert getaddrinfo.call_args.args[0] == "intranet.example.com"


def test_one_private_answer_among_public_ones_is_enough():
    answers = _a("93.184.216.34") + _aaaa("2606:2800:220:1::1", "::ffff:10.0.0.1")
    with mock.patch("socket.getaddrinfo", return_value=answers):
        assert host_is_private("mixed.example.com")


def test_a_name_resolving_to_public_records_is_public():
    answers = _a("93.184.216.34") + _aaaa("2606:2800:220:1::1")
    with mock.patch("socket.getaddrinfo", return_value=answers):
        assert not host_is_private("example.com")


def test_names_are_not_resolved_without_resolve_and_unresolvable_names_are_public():
    with mock.patch("socket.getaddrinfo", return_value=_aaaa("::1")) as getaddrinfo:
        assert not host_is_private("intranet.example.com", resolve=False)
    getaddrinfo.assert_not_called()
    with mock.patch("socket.getaddrinfo", side_effect=socket.gaierror("no such name")):
        assert not host_is_private("nowhere.invalid")


def test_importing_addresses_does_not_import_django():
    code = ("import sys; import django_evolink.evolink.addresses; "
            "assert 'django' not in sys.modules, sorted(m for m in sys.modules if 'django' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
