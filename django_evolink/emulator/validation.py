"""Checks on incoming API requests: the API key, and the body of a create request.

The body is checked by the model's rules from the catalogue the app ships
(:mod:`django_evolink.evolink.modelspec`, Django-free): one engine, so the emulator and
the app agree on what each model takes; the emulator words each problem as Evolink does.

Each broken rule raises :class:`~.errors.ApiError` with Evolink's status, message and
``param`` (see evolink-api.md). Internal addresses are recognised by
:func:`django_evolink.evolink.addresses.host_is_private`, without resolving names (the
emulator must work offline).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from ..evolink.addresses import host_is_private
from ..evolink.modelspec import ModelSpec, Problem, load
from .errors import ApiError

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


def _count_text(low: int, high: int | None) -> str:
    if high is None:
        return f"at least {low}"
    if low == high:
        return str(low)
    return f"{low} or {high}" if high == low + 1 else f"{low} to {high}"


def _english(spec: ModelSpec, problem: Problem) -> str:
    """Evolink's English for one problem found by the catalogue's engine."""
    args = problem.args
    param = args.get("param") or problem.field
    code = problem.code
    if problem.field == "prompt" and code != "unknown":
        limit = spec.prompt_max_chars
        return {
            "required": "prompt is required",
            "type": "prompt must be a string",
            "empty": "prompt must not be empty",
            "nul": "prompt must not contain NUL characters",
        }.get(code) or (f"prompt is too long: {args.get('got')} characters, at most {limit}")
    if problem.field == "n" and code in ("type", "range"):
        low, high = spec.n_min, spec.n_max
        if code == "type":
            return f"n must be an integer between {low} and {high}"
        return f"n must be between {low} and {high} (got {args['value']})"
    if problem.field == "image_urls" and param != "image_urls":
        return f"{param} must be a non-empty URL string"
    if problem.field == "image_urls" and code != "unknown":
        count = _count_text(spec.min_images, spec.max_images)
        if code == "required":
            return f"image_urls is required: {count} reference image URLs"
        if code == "type":
            return "image_urls must be an array of URLs"
        if code in ("min_items", "max_items"):
            return f"image_urls must contain {count} images (got {args['got']})"
    if code == "unknown":
        if param == "image_urls":
            return f"{spec.name} does not take image_urls (text to image)"
        return (f"{param} is not a parameter of {spec.name}; it takes: "
                + ", ".join(args["allowed"]))
    if code == "required":
        return f"{param} is required"
    if code == "type":
        return f"{param} must be of type {args['type']}"
    if code == "enum":
        return f"{param} must be one of: " + ", ".join(str(v) for v in args["allowed"])
    if code == "range":
        return f"{param} must be between {args['min']} and {args['max']} (got {args['value']})"
    if code == "max_length":
        return f"{param} is too long: {args['got']} characters, at most {args['max']}"
    if code in ("min_items", "max_items"):
        return f"{param} must contain {_count_text(args['min'], args['max'])} items"
    if code == "size_format":
        ratios = ", ".join(args["allowed"])
        return f"size must be one of {ratios} or WIDTHxHEIGHT" if ratios else (
            "size must be WIDTHxHEIGHT")
    if code.startswith("size_"):
        return f"size {args['value']} is outside the supported range for {spec.name}"
    if code == "images_plus_n":
        return (f"the number of reference images plus n must be at most {args['max']} "
                f"(got {args['images']} + {args['n']})")
    if code == "only_with":
        return f"{param} can only be used when {args['other']} is {args['value']}"
    if code == "when_value":
        return (f"{param} must be one of {', '.join(args['allowed'])} when "
                f"{args['other']} is {args['value']}")
    if code == "when_images":
        return f"{param}={args['value']} needs exactly {args['count']} reference image"
    return f"{param} is invalid"


#: The model suggested for an unknown name nothing resembles (the seed's model).
FALLBACK_MODEL = "wan2.5-image-to-image"


def suggest_model(name: Any, models: Collection[str]) -> str:
    """The ``fallback_suggestion`` of a 404 for the unknown model ``name``: the closest
    known name (the emulator's guess of how Evolink picks it), else the seed's model."""
    close = difflib.get_close_matches(str(name), sorted(models), n=1, cutoff=0.6)
    model = close[0] if close else (FALLBACK_MODEL if FALLBACK_MODEL in models
                                    else min(models, default=FALLBACK_MODEL))
    return f"try the model '{model}'"


def validate_create(body: Any, *, models: Collection[str], allow_private_urls: bool,
                    allow_insecure_callbacks: bool) -> dict[str, Any]:
    """The parameters of ``POST /v1/images/generations`` checked by the model's rules in
    the catalogue (the same data and engine as the app): model, then each parameter in
    the docs' order, then the image URLs and callback_url. The input images are not
    fetched here. Returns ``{"model", "spec", "prompt", "n", "image_urls", "params",
    "callback_url"}``."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object")
    model = body.get("model")
    if model is None:
        raise ApiError(400, "model is required", "model")
    spec = load().models.get(model) if isinstance(model, str) else None
    if spec is not None and spec.kind != "image" and model in models:
        raise ApiError(400, f"{model} is a {spec.kind} model: use {spec.path}", "model")
    if spec is None or not isinstance(model, str) or model not in models:
        raise ApiError(404, f"The model '{model}' does not exist or is not available",
                       "model", fallback_suggestion=suggest_model(model, models))
    callback_url = body.get("callback_url")
    fields = {k: v for k, v in body.items() if k not in ("model", "callback_url")}
    problems = spec.problems(fields)
    if problems:
        problem = problems[0]
        param = problem.args.get("param") or problem.field
        raise ApiError(400, _english(spec, problem), str(param))
    urls = fields.get("image_urls") or []
    for i, url in enumerate(urls):
        check_url(url, f"image_urls[{i}]", https_only=False,
                  allow_internal=allow_private_urls, what="the image URL")
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
    n = fields.get("n", spec.default_n) if spec.takes("n") else 1
    params = {k: v for k, v in fields.items() if k not in ("prompt", "image_urls", "n")}
    return {"model": model, "spec": spec, "prompt": fields.get("prompt") or "", "n": n,
            "image_urls": list(urls), "params": params, "callback_url": callback_url}
