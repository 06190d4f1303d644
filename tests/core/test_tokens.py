"""Unit tests of the per-task callback tokens: generation, hashing, comparison, URL."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from django.urls import include, path, resolve

from django_evolink.core import tokens
from django_evolink.core.tokens import (
    TOKEN_BYTES,
    callback_url,
    hash_token,
    new_token,
    token_matches,
)

#: SHA-256 of b"abc" (FIPS 180-2 test vector).
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
URLSAFE = re.compile(r"^[A-Za-z0-9_-]+$")

#: A second URLconf (used via ROOT_URLCONF) mounting the app somewhere else.
urlpatterns = [path("hooks/evo/", include("django_evolink.urls"))]


# --- hash_token -------------------------------------------------------------------------


def test_hash_token_is_sha256_hex() -> None:
    """The stored hash is the lowercase SHA-256 hex digest of the UTF-8 token."""
    assert hash_token("abc") == ABC_SHA256


def test_hash_token_of_empty_string() -> None:
    """The empty string hashes like any other (no special case)."""
    assert hash_token("") == hashlib.sha256(b"").hexdigest()


def test_hash_token_encodes_non_ascii_as_utf8() -> None:
    """Non-ASCII tokens are hashed from their UTF-8 bytes."""
    assert hash_token("café") == hashlib.sha256("café".encode()).hexdigest()


def test_hash_token_accepts_lone_surrogates() -> None:
    """A token with a lone surrogate (possible from a decoded URL) hashes, never raises."""
    digest = hash_token("\ud800x")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == hashlib.sha256("\ud800x".encode("utf-8", "surrogatepass")).hexdigest()


def test_hash_token_is_deterministic_and_discriminating() -> None:
    """Equal tokens hash equally; tokens differing in one character do not."""
    assert hash_token("token-a") == hash_token("token-a")
    assert hash_token("token-a") != hash_token("token-b")
    assert hash_token("token") != hash_token("token ")


# --- new_token --------------------------------------------------------------------------


def test_new_token_returns_the_raw_token_and_its_hash() -> None:
    """``new_token()`` is ``(raw, hash_token(raw))``."""
    raw, digest = new_token()
    assert digest == hash_token(raw)
    assert raw != digest


def test_new_token_has_256_bits_of_url_safe_randomness() -> None:
    """The raw token is 32 random bytes, URL-safe base64 without padding (43 characters)."""
    assert TOKEN_BYTES >= 16  # at least 128 bits, as the module promises
    raw, _ = new_token()
    assert len(raw) == 43
    assert URLSAFE.match(raw)
    assert len(base64.urlsafe_b64decode(raw + "=")) == TOKEN_BYTES == 32


def test_new_token_draws_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Randomness comes from ``secrets.token_urlsafe(TOKEN_BYTES)``, not ``random``."""
    calls: list[Any] = []

    def spy(nbytes: Any = None) -> str:
        calls.append(nbytes)
        return "fixed-token"

    monkeypatch.setattr(tokens.secrets, "token_urlsafe", spy)
    assert new_token() == ("fixed-token", hash_token("fixed-token"))
    assert calls == [TOKEN_BYTES]


def test_new_tokens_are_distinct() -> None:
    """Many fresh tokens never repeat (raw or hash)."""
    pairs = [new_token() for _ in range(200)]
    assert len({raw for raw, _ in pairs}) == 200
    assert len({digest for _, digest in pairs}) == 200


# --- token_matches ----------------------------------------------------------------------


def test_token_matches_its_own_hash() -> None:
    """A token matches the hash stored for it."""
    raw, digest = new_token()
    assert token_matches(raw, digest) is True


def test_token_does_not_match_another_tokens_hash() -> None:
    """A different token does not match."""
    raw, _ = new_token()
    _, other = new_token()
    assert token_matches(raw, other) is False


def test_near_miss_token_does_not_match() -> None:
    """One character changed, dropped or added in the raw token: no match."""
    raw = "Q3xk-9_pLm"
    digest = hash_token(raw)
    assert token_matches("Q3xk-9_pLn", digest) is False
    assert token_matches(raw[:-1], digest) is False
    assert token_matches(raw + "A", digest) is False
    assert token_matches(raw.swapcase(), digest) is False


def test_near_miss_hash_does_not_match() -> None:
    """A stored hash off by one hex digit, or in upper case, does not match."""
    assert ABC_SHA256.endswith("d")
    assert token_matches("abc", ABC_SHA256[:-1] + "e") is False
    assert token_matches("abc", ABC_SHA256.upper()) is False


@pytest.mark.parametrize("stored", ["", None])
def test_empty_stored_hash_never_matches(stored: Any) -> None:
    """A task without a stored hash accepts no token, not even the empty one."""
    assert token_matches("", stored) is False
    assert token_matches("anything", stored) is False


def test_empty_stored_hash_is_refused_before_comparing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty stored hash short-circuits; the comparison is not even run."""
    calls: list[tuple[Any, Any]] = []
    monkeypatch.setattr(tokens.hmac, "compare_digest",
                        lambda a, b: calls.append((a, b)) or True)
    assert token_matches("x", "") is False
    assert calls == []


def test_empty_raw_token_does_not_match_a_real_hash() -> None:
    """An empty presented token does not match a real token's hash."""
    _, digest = new_token()
    assert token_matches("", digest) is False


@pytest.mark.parametrize("stored", ["ab", ABC_SHA256[:-1], ABC_SHA256 + "0", ABC_SHA256 * 2])
def test_stored_hash_of_another_length_does_not_match(stored: str) -> None:
    """A stored hash of the wrong length is a mismatch, not an error."""
    assert token_matches("abc", stored) is False


def test_stored_hash_equal_to_the_raw_token_does_not_match() -> None:
    """The raw token itself is not accepted as its stored form (the hash is compared)."""
    raw, _ = new_token()
    assert token_matches(raw, raw) is False


@pytest.mark.parametrize("raw", ["café", "токен", "\u00e9" * 43, "😀", "\ud800"])
def test_non_ascii_tokens_match_their_hash_and_nothing_else(raw: str) -> None:
    """Non-ASCII presented tokens are compared by hash: no error, exact match only."""
    assert token_matches(raw, hash_token(raw)) is True
    assert token_matches(raw, ABC_SHA256) is False


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hashes are compared with ``hmac.compare_digest`` (never ``==``)."""
    calls: list[tuple[Any, Any]] = []
    real = tokens.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("django_evolink.core.tokens.hmac.compare_digest", spy)
    assert token_matches("abc", ABC_SHA256) is True
    assert token_matches("abd", ABC_SHA256) is False
    assert calls == [(ABC_SHA256, ABC_SHA256), (hash_token("abd"), ABC_SHA256)]


def test_the_answer_is_compare_digests_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """``token_matches`` returns what ``compare_digest`` says (no second, leaky check)."""
    monkeypatch.setattr(tokens.hmac, "compare_digest", lambda a, b: False)
    assert token_matches("abc", ABC_SHA256) is False
    monkeypatch.setattr(tokens.hmac, "compare_digest", lambda a, b: True)
    assert token_matches("abc", "f" * 64) is True


# --- callback_url -----------------------------------------------------------------------


@pytest.mark.parametrize("base", [None, ""])
def test_callback_url_is_none_when_callbacks_are_off(settings, base: str | None) -> None:
    """No CALLBACK_BASE_URL (None or empty): no callback URL."""
    settings.EVOLINK = {"CALLBACK_BASE_URL": base}
    assert callback_url("tok") is None


def test_callback_url_is_none_by_default(settings) -> None:
    """The default configuration is poll-only."""
    settings.EVOLINK = {}
    assert callback_url("tok") is None


@pytest.mark.parametrize(
    "base",
    ["https://site.example", "https://site.example/", "https://site.example///"],
)
def test_callback_url_joins_base_and_route_with_one_slash(settings, base: str) -> None:
    """Trailing slashes of the base are dropped; the route supplies exactly one."""
    settings.EVOLINK = {"CALLBACK_BASE_URL": base}
    assert callback_url("tok") == "https://site.example/evolink/callback/tok/"


def test_callback_url_keeps_a_path_prefix_of_the_base(settings) -> None:
    """A base with a path (site behind a prefix) keeps it."""
    settings.EVOLINK = {"CALLBACK_BASE_URL": "https://site.example/app/"}
    assert callback_url("tok") == "https://site.example/app/evolink/callback/tok/"


def test_callback_url_carries_the_raw_token_not_its_hash(settings) -> None:
    """Evolink is given the raw token (the database keeps only the hash)."""
    settings.EVOLINK = {"CALLBACK_BASE_URL": "https://site.example"}
    raw, digest = new_token()
    url = callback_url(raw)
    assert url is not None
    assert url.endswith(f"/callback/{raw}/")
    assert digest not in url


def test_callback_url_resolves_to_the_callback_view(settings) -> None:
    """The path of the URL routes to ``evolink:callback`` with the token as argument."""
    settings.EVOLINK = {"CALLBACK_BASE_URL": "https://site.example"}
    raw, _ = new_token()
    url = callback_url(raw)
    assert url is not None
    match = resolve(url.removeprefix("https://site.example"))
    assert match.view_name == "evolink:callback"
    assert match.kwargs == {"token": raw}


def test_callback_url_follows_where_the_app_is_mounted(settings) -> None:
    """The route comes from reversing ``evolink:callback``, not a hard-coded path."""
    settings.ROOT_URLCONF = __name__
    settings.EVOLINK = {"CALLBACK_BASE_URL": "https://site.example"}
    assert callback_url("tok") == "https://site.example/hooks/evo/callback/tok/"


def test_callback_url_reads_the_setting_on_each_call(settings) -> None:
    """Changing CALLBACK_BASE_URL takes effect immediately (no cached base)."""
    settings.EVOLINK = {"CALLBACK_BASE_URL": "https://one.example"}
    assert callback_url("t") == "https://one.example/evolink/callback/t/"
    settings.EVOLINK = {"CALLBACK_BASE_URL": "https://two.example"}
    assert callback_url("t") == "https://two.example/evolink/callback/t/"
    settings.EVOLINK = {}
    assert callback_url("t") is None
