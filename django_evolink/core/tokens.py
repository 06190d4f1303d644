"""Per-task callback tokens: at least 128 bits of randomness, stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.urls import reverse

from .. import conf

#: Bytes of randomness in a callback token (256 bits).
TOKEN_BYTES = 32


def hash_token(raw: str) -> str:
    """The SHA-256 hex digest stored in ``ImageTask.callback_token_hash``."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh ``(raw token, hash)``; only the hash is ever stored."""
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    return raw, hash_token(raw)


def token_matches(raw: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    if not stored_hash:
        return False
    return hmac.compare_digest(hash_token(raw), stored_hash)


def callback_url(raw: str) -> str | None:
    """The callback URL Evolink should POST to, or None when callbacks are off."""
    base: str | None = conf.get("CALLBACK_BASE_URL")
    if not base:
        return None
    return base.rstrip("/") + reverse("evolink:callback", kwargs={"token": raw})
