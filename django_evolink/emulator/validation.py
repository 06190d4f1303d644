"""Checks on incoming API requests: the API key, and the body of a create request.

Each broken rule raises :class:`~.errors.ApiError` with Evolink's status, message and
``param`` (see evolink-api.md). Internal addresses are recognised by
:func:`django_evolink.evolink.addresses.host_is_private`, without resolving names (the
emulator must work offline).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from ..evolink.addresses import host_is_private
from .errors import ApiError

MAX_PROMPT = 2000
MAX_CALLBACK_URL = 2048


def is_internal_host(host: str) -> bool:
    """True for loopback, private, link-local, CGNAT, reserved or unspecified addresses.

    Hostnames are not resolved (the emulator must work offline); ``localhost`` and
    ``*.localhost`` names count as internal, as do IPv4 addresses written as an integer,
    in hex or octal, or short (``127.1``).
    """
    return host_is_private(host, resolve=False)


def check_api_key(headers: Any, api_keys: Collection[str] | None) -> None:
    """401 unless ``Authorization: Bearer <key>`` names an accepted key.

    ``api_keys`` None accepts any key starting ``sk-evo-``.
    """
    value = headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if not value:
        raise ApiError(401, "Missing API key: send 'Authorization: Bearer <API key>'")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "Malformed Authorization header: expected 'Bearer <API key>'")
    valid = token.startswith("sk-evo-") if api_keys is None else token in api_keys
    if not valid:
        raise ApiError(401, "Invalid or expired API key")


def check_url(value: Any, param: str, *, https_only: bool, allow_internal: bool,
              what: str) -> str:
    """``value`` if it is an acceptable http(s) URL for ``param``; ApiError 400 otherwise."""
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{param} must be a non-empty URL string", param)
    parts = urlsplit(value)
    allowed = ("https",) if https_only else ("http", "https")
    if parts.scheme.lower() not in allowed or not parts.hostname:
        need = "an https:// URL" if https_only else "an http:// or https:// URL"
        raise ApiError(400, f"{param}: {what} must be {need}", param)
    if not allow_internal and is_internal_host(parts.hostname):
        raise ApiError(
            400, f"{param}: {what} must not point to an internal address "
            f"({parts.hostname})", param,
        )
    return value


def validate_create(body: Any, *, models: Collection[str], allow_private_urls: bool,
                    allow_insecure_callbacks: bool) -> dict[str, Any]:
    """The parameters of ``POST /v1/images/generations``: model, prompt, n, image_urls
    and callback_url, checked in Evolink's order (the input images are not fetched here)."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise ApiError(400, "model is required", "model")
    if not isinstance(model, str) or model not in models:
        raise ApiError(404, f"The model '{model}' does not exist or is not available",
                       "model")
    prompt = body.get("prompt")
    if prompt is None:
        raise ApiError(400, "prompt is required", "prompt")
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string", "prompt")
    if not prompt.strip():
        raise ApiError(400, "prompt must not be empty", "prompt")
    if len(prompt) > MAX_PROMPT:
        raise ApiError(
            400, f"prompt is too long: {len(prompt)} characters, at most {MAX_PROMPT}",
            "prompt",
        )
    n = body.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int):
        raise ApiError(400, "n must be an integer between 1 and 4", "n")
    if not 1 <= n <= 4:
        raise ApiError(400, f"n must be between 1 and 4 (got {n})", "n")
    urls = body.get("image_urls")
    if urls is None:
        raise ApiError(400, "image_urls is required: 1 or 2 reference image URLs",
                       "image_urls")
    if not isinstance(urls, list):
        raise ApiError(400, "image_urls must be an array of URLs", "image_urls")
    if not 1 <= len(urls) <= 2:
        raise ApiError(
            400, f"image_urls must contain 1 or 2 images (got {len(urls)})", "image_urls"
        )
    for i, url in enumerate(urls):
        check_url(url, f"image_urls[{i}]", https_only=False,
                  allow_internal=allow_private_urls, what="the image URL")
    callback_url = body.get("callback_url")
    if callback_url is not None:
        if not isinstance(callback_url, str):
            raise ApiError(400, "callback_url must be a URL string", "callback_url")
        if len(callback_url) > MAX_CALLBACK_URL:
            raise ApiError(
                400, f"callback_url is too long: {len(callback_url)} characters, at most "
                f"{MAX_CALLBACK_URL}", "callback_url",
            )
        insecure = allow_insecure_callbacks
        check_url(callback_url, "callback_url", https_only=not insecure,
                  allow_internal=insecure, what="the callback URL")
    return {"model": model, "prompt": prompt, "n": n, "image_urls": urls,
            "callback_url": callback_url}
