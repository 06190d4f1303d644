"""The model catalogue as the site sees it: which models are allowed, and every check of
a create request put into translated words.

The rules are data (``catalogue.json``, read by :mod:`.modelspec`); adding a model is
regenerating that file (``make catalogue``). The REST serializers, ``services.create_task``,
the upload checks and the management commands all validate through the functions here,
so their messages agree. Each message is keyed by the field it is about and says what is
allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import IO, Any

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .. import conf
from ..exceptions import EvolinkValidationError
from . import imagerules, url_policy
from .modelspec import CORE_FIELDS, ImageLimits, ModelSpec, Problem, load
from .payloads import NUL, unstorable_text

#: Characters never valid in a URL (controls, NUL, space); NUL also breaks PostgreSQL.
_CONTROL_CHARS = re.compile(r"[\x00-\x20\x7f]")
#: This site's cap on an uploaded file when Evolink states no limit for the model.
DEFAULT_UPLOAD_MAX_BYTES = 50 * 1024 * 1024
#: Fields that are not parameters of a model: set by django-evolink itself.
RESERVED = ("model", "callback_url")

#: Every image model of the catalogue, by Evolink's model name.
CATALOGUE: dict[str, ModelSpec] = {spec.name: spec for spec in load().image_models}

__all__ = [
    "CATALOGUE",
    "ImageLimits",
    "ModelSpec",
    "allowed_models",
    "get_spec",
    "image_file_errors",
    "model_list",
    "validate_request",
]


def allowed_models() -> list[str]:
    """The image models this site allows (``EVOLINK['MODELS']``; None: all), sorted."""
    chosen = conf.get("MODELS")
    names = CATALOGUE if chosen is None else [m for m in chosen if m in CATALOGUE]
    return sorted(names)


def kind_word(kind: str) -> str:
    """The kind of a model (image, video, audio) as a word of the active language."""
    return {"video": _("video"), "audio": _("audio"), "image": _("image")}.get(kind, kind)


#: The most files one upload may carry for a model whose docs state no image count.
DEFAULT_MAX_UPLOADS = 16


def upload_bounds() -> tuple[int, int]:
    """``(files, bytes per file)``: the most images and the largest file any allowed
    model takes (a model stating no limit counts as :data:`DEFAULT_MAX_UPLOADS` files of
    :data:`DEFAULT_UPLOAD_MAX_BYTES`); what a multipart body is cut off at while it is
    received. ``(1, 10 MB)`` when no allowed model takes images."""
    limits = [CATALOGUE[name].images for name in allowed_models()]
    taken = [lim for lim in limits if lim is not None]
    if not taken:
        return 1, 10 * 1024 * 1024
    files = max(DEFAULT_MAX_UPLOADS if lim.max is None else lim.max for lim in taken)
    size = max(lim.max_bytes or DEFAULT_UPLOAD_MAX_BYTES for lim in taken)
    return files, size


def get_spec(model: str | None) -> ModelSpec:
    """The spec of ``model`` (default: ``EVOLINK['DEFAULT_MODEL']``) if this site allows it.

    Raises :class:`EvolinkValidationError` keyed ``model`` for an unknown model, a video
    or audio model, or a model left out of ``EVOLINK['MODELS']``.
    """
    name = model or conf.get("DEFAULT_MODEL")
    allowed = allowed_models()
    shown = name if not isinstance(name, str) or len(name) <= 100 else name[:100] + "…"
    spec = CATALOGUE.get(name) if isinstance(name, str) else None
    if spec is not None and name in allowed:
        return spec
    other = load().models.get(name) if isinstance(name, str) else None
    if other is not None and other.kind != "image":
        message = _(
            "%(model)s is a %(kind)s model; only image models can be used here. "
            "Allowed: %(allowed)s."
        ) % {"model": shown, "kind": kind_word(other.kind), "allowed": ", ".join(allowed)}
    elif spec is not None:
        message = _("Model %(model)r is not allowed on this site. Allowed: %(allowed)s.") % {
            "model": shown, "allowed": ", ".join(allowed)}
    else:
        message = _("Unknown model %(model)r. Allowed: %(allowed)s.") % {
            "model": shown, "allowed": ", ".join(allowed)}
    raise EvolinkValidationError({"model": [message]})


def model_list() -> list[dict[str, Any]]:
    """What ``GET models/`` answers: ``[{"name", "kind", "default", "parameters"}]``."""
    default = conf.get("DEFAULT_MODEL")
    return [
        {"name": name, "kind": CATALOGUE[name].kind, "default": name == default,
         "parameters": CATALOGUE[name].request_schema()}
        for name in allowed_models()
    ]


def text_errors(value: Any, *, prefix: str = "") -> list[str]:
    """Messages for client text no database can store: NUL characters (PostgreSQL
    refuses them) and lone surrogates (not valid Unicode, so not encodable as UTF-8).

    Every create entry point (REST JSON and multipart, ``services.create_task``, the
    commands, the admin) validates through this module, so none of them can reach the
    database with such text and answer a 500. ``value`` may be nested (a parameter's
    object): every string in it, keys included, is checked.
    """
    problem = unstorable_text(value)
    if problem is None:
        return []
    if problem == NUL:
        return [prefix + _("Text must not contain NUL (\\x00) characters.")]
    return [
        prefix
        + _(
            "Text must be valid Unicode: lone surrogates (U+D800 to U+DFFF) cannot be "
            "stored. Send whole characters (in JSON, a surrogate pair such as "
            "\\ud83d\\ude00)."
        )
    ]


# ------------------------------------------------------------------------ messages --
def _list(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def _count_text(spec: ModelSpec) -> str:
    low, high = spec.min_images, spec.max_images
    if high is None:
        return _("at least %(min)d") % {"min": low}
    if low == high:
        return str(low)
    return _("%(min)d to %(max)d") % {"min": low, "max": high}


def _type_word(kind: Any) -> str:
    return {
        "string": _("text"), "integer": _("a whole number"), "number": _("a number"),
        "boolean": _("true or false"), "array": _("a list"), "object": _("an object"),
    }.get(kind, str(kind))


def _range_text(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return _("from %(min)s to %(max)s") % {"min": low, "max": high}
    if low is not None:
        return _("at least %(min)s") % {"min": low}
    return _("at most %(max)s") % {"max": high}


def _prompt_message(spec: ModelSpec, problem: Problem) -> str | None:
    code, args = problem.code, problem.args
    limit = spec.prompt_max_chars
    if code in ("required", "type", "empty"):
        if limit:
            return _("A prompt is required (1 to %(max)d characters).") % {"max": limit}
        return _("A prompt is required.")
    if code == "max_length":
        return _("At most %(max)d characters for %(model)s (got %(got)d).") % {
            "max": args["max"], "model": spec.name, "got": args["got"]}
    return None


def _n_message(spec: ModelSpec, problem: Problem) -> str | None:
    if problem.code in ("type", "range", "required"):
        return _("n must be a whole number from %(min)d to %(max)d for %(model)s.") % {
            "min": spec.n_min, "max": spec.n_max or spec.n_min, "model": spec.name}
    if problem.code == "images_plus_n":
        args = problem.args
        return _(
            "For %(model)s, reference images plus images to generate are at most %(max)d "
            "(got %(images)d + %(n)d)."
        ) % {"model": spec.name, **args}
    return None


def _images_message(spec: ModelSpec, problem: Problem) -> str | None:
    code = problem.code
    if code == "unknown" and problem.args.get("param") == "image_urls":
        return _("%(model)s takes no images.") % {"model": spec.name}
    if code in ("required", "type"):
        return _("image_urls must be a list of %(count)s URLs.") % {"count": _count_text(spec)}
    if code == "min_items":
        return ngettext("At least %(min)d image for %(model)s.",
                        "At least %(min)d images for %(model)s.",
                        spec.min_images) % {"min": spec.min_images, "model": spec.name}
    if code == "max_items":
        return _("At most %(max)d images for %(model)s.") % {
            "max": spec.max_images, "model": spec.name}
    return None


def message(spec: ModelSpec, problem: Problem) -> str:
    """The translated message of one problem: what is wrong and what is allowed."""
    key = problem.args.get("param", problem.field) if problem.code == "unknown" else (
        problem.field)
    handler = {"prompt": _prompt_message, "n": _n_message, "image_urls": _images_message}.get(
        key)
    text = handler(spec, problem) if handler else None
    if text:
        return text
    args = dict(problem.args)
    param = args.get("param") or problem.field
    code = problem.code
    if code == "unknown":
        return _("%(param)s is not a parameter of %(model)s. It takes: %(allowed)s.") % {
            "param": param, "model": spec.name, "allowed": _list(args["allowed"]) or "-"}
    if code == "required":
        return _("%(param)s is required for %(model)s.") % {"param": param, "model": spec.name}
    if code == "type":
        return _("%(param)s must be %(type)s.") % {"param": param,
                                                    "type": _type_word(args["type"])}
    if code == "enum":
        return _("%(param)s must be one of: %(allowed)s.") % {
            "param": param, "allowed": _list(args["allowed"])}
    if code == "range":
        return _("%(param)s must be %(range)s.") % {
            "param": param, "range": _range_text(args["min"], args["max"])}
    if code == "empty":
        return _("%(param)s must not be empty.") % {"param": param}
    if code == "max_length":
        return _("%(param)s is at most %(max)d characters (got %(got)d).") % {
            "param": param, "max": args["max"], "got": args["got"]}
    if code == "max_bytes":
        return _("%(param)s is at most %(max)d bytes in UTF-8 (got %(got)d).") % {
            "param": param, "max": args["max"], "got": args["got"]}
    if code in ("min_items", "max_items"):
        return _("%(param)s must have %(range)s items (got %(got)d).") % {
            "param": param, "range": _range_text(args["min"], args["max"]), "got": args["got"]}
    if code == "size_format":
        if args["allowed"]:
            return _("%(param)s must be one of %(allowed)s, or WIDTHxHEIGHT in pixels.") % {
                "param": param, "allowed": _list(args["allowed"])}
        return _("%(param)s must be WIDTHxHEIGHT in pixels, e.g. 1024x1024.") % {
            "param": param}
    if code == "size_sides":
        return _("size %(value)s: width and height must each be %(range)s px.") % {
            "value": args["value"], "range": _range_text(args["min"], args["max"])}
    if code == "size_multiple":
        return _("size %(value)s: width and height must be multiples of %(multiple)d.") % args
    if code == "size_total":
        return _("size %(value)s is %(got)d pixels; allowed: %(range)s pixels.") % {
            "value": args["value"], "got": args["got"],
            "range": _range_text(args["min"], args["max"])}
    if code == "size_ratio":
        return _("size %(value)s: width/height must be %(range)s.") % {
            "value": args["value"], "range": _range_text(args["min"], args["max"])}
    if code == "only_with":
        return _("%(param)s can only be set when %(other)s is %(value)s, for %(model)s.") % {
            "param": param, "other": args["other"], "value": args["value"], "model": spec.name}
    if code == "when_value":
        return _("With %(other)s=%(value)s, %(param)s must be one of: %(allowed)s.") % {
            "param": param, "other": args["other"], "value": args["value"],
            "allowed": _list(args["allowed"])}
    if code == "when_images":
        return _("With %(param)s=%(value)s, %(model)s takes exactly %(count)d reference "
                 "image (got %(got)d).") % {**args, "model": spec.name}
    if code == "not_object":
        return _("Send a JSON object.")
    return _("%(param)s is not valid for %(model)s.") % {"param": param, "model": spec.name}


# ------------------------------------------------------------------------- checking --
def _url_errors(spec: ModelSpec, urls: list[Any], *, resolve: bool) -> list[str]:
    """Each URL: a string, no control characters, not too long, allowed by the URL policy."""
    errors: list[str] = []
    for i, url in enumerate(urls, start=1):
        unstorable = text_errors(url, prefix=_("Image %(i)d: ") % {"i": i})
        if not isinstance(url, str) or not url:
            errors.append(_("Image %(i)d: a URL string is required.") % {"i": i})
        elif unstorable:
            errors.extend(unstorable)
        elif _CONTROL_CHARS.search(url):
            errors.append(
                _("Image %(i)d: URLs must not contain control characters or spaces.") % {"i": i}
            )
        elif len(url) > spec.url_max_chars:
            errors.append(_("Image %(i)d: URLs are at most %(max)d characters.")
                          % {"i": i, "max": spec.url_max_chars})
        else:
            problem = url_policy.check_url(url, resolve=resolve)
            if problem:
                errors.append(_("Image %(i)d: %(problem)s") % {"i": i, "problem": problem})
    return errors


def _uri_params(spec: ModelSpec) -> list[str]:
    """Top-level parameters that are one URL (e.g. ``mask_url``)."""
    return [name for name, schema in spec.properties.items()
            if schema.get("type") == "string" and schema.get("format") == "uri"]


def _clean_params(params: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    if params is None:
        return {}, {}
    if not isinstance(params, Mapping):
        return {}, {"params": [_("params must be an object of the model's parameters.")]}
    bad_names = [name for name in params if text_errors(name)]
    if bad_names:  # a name that cannot be stored cannot key a message either
        return {}, {"params": text_errors(bad_names[0], prefix=_("A parameter's name: "))}
    errors = {
        name: [_("%(param)s is set by django-evolink or has its own argument; it is not a "
                 "parameter in params.") % {"param": name}]
        for name in params if name in (*RESERVED, *CORE_FIELDS)
    }
    return {str(k): v for k, v in params.items()}, errors


def validate_request(
    *,
    prompt: Any = None,
    image_urls: Any = None,
    n: Any = None,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    resolve: bool = True,
    uploads: int | None = None,
) -> dict[str, Any]:
    """Check a whole create request; return the cleaned values or raise.

    ``params`` are the model's other parameters by Evolink's names. ``uploads`` is the
    number of uploaded files standing in for ``image_urls`` (their errors are keyed
    ``image_urls``; the caller renames them). Raises :class:`EvolinkValidationError` with
    field-keyed messages that say what is allowed; nothing is sent to Evolink. Returns
    ``{"model", "prompt", "image_urls", "n", "params"}`` (``n`` is None for a model
    without ``n``).
    """
    spec = get_spec(model)
    extra, errors = _clean_params(params)
    body: dict[str, Any] = {k: v for k, v in extra.items() if k not in errors}
    if prompt is not None and (prompt != "" or spec.takes("prompt")):
        body["prompt"] = prompt
    urls = image_urls
    if uploads is not None:
        urls = [f"upload:{i}" for i in range(uploads)]
    if urls is not None and (urls != [] or spec.images is not None):
        body["image_urls"] = urls
    if n is not None or spec.takes("n"):
        body["n"] = spec.default_n if n is None else n
    for name, value in body.items():
        if name != "image_urls":  # each URL is named in its own message (_url_errors)
            prefix = _("The prompt: ") if name == "prompt" else f"{name}: "
            unstorable = text_errors(value, prefix=prefix)
            if unstorable:
                errors.setdefault(name, unstorable)
    for problem in spec.problems(body):
        errors.setdefault(problem.field, [message(spec, problem)])
    if uploads is None and "image_urls" not in errors and isinstance(urls, list) and urls:
        url_errors = _url_errors(spec, urls, resolve=resolve)
        if url_errors:
            errors["image_urls"] = url_errors
    for name in _uri_params(spec):
        if name not in errors and isinstance(body.get(name), str):
            problems = _url_errors(spec, [body[name]], resolve=resolve)
            if problems:
                errors[name] = problems
    if errors:
        raise EvolinkValidationError(errors)
    return {
        "model": spec.name,
        "prompt": body.get("prompt", ""),
        "image_urls": list(urls or []) if uploads is None else [],
        "n": body.get("n"),
        "params": {k: v for k, v in body.items() if k not in CORE_FIELDS},
    }


def _file_message(spec: ModelSpec, problem: Problem) -> str:
    args = problem.args
    limits = spec.images
    allowed = args.get("allowed") or _("any readable image")
    code = problem.code
    if code == "file_too_big":
        return _("The file is %(got).1f MB; at most %(max)d MB is allowed.") % {
            "got": args["got"] / 1024 / 1024, "max": args["max_mb"]}
    if code == "file_empty":
        return _("The file is empty.")
    if code == "format":
        return _("Format %(fmt)s is not accepted; allowed: %(allowed)s.") % {
            "fmt": args["format"], "allowed": allowed}
    if code == "sides":
        if args["max"] is None:
            return _("The image is %(w)dx%(h)d px; width and height must each be at least "
                     "%(min)d px.") % {"w": args["width"], "h": args["height"], "min": args["min"]}
        return _(
            "The image is %(w)dx%(h)d px; width and height must each be from %(min)d to "
            "%(max)d px."
        ) % {"w": args["width"], "h": args["height"], "min": args["min"], "max": args["max"]}
    if code == "pixels":
        return _("The image is %(w)dx%(h)d px (%(got)d pixels); allowed: %(range)s pixels.") % {
            "w": args["width"], "h": args["height"], "got": args["got"],
            "range": _range_text(args["min"], args["max"])}
    if code == "ratio":
        return _("The image is %(w)dx%(h)d px; width/height must be %(range)s.") % {
            "w": args["width"], "h": args["height"],
            "range": _range_text(args["min"], args["max"])}
    if code == "bomb":
        return _("The image has too many pixels to be decoded safely.")
    if code == "alpha":
        return _("Images with transparency (an alpha channel) are not accepted; "
                 "flatten the image first.")
    return _("The file is not a readable image (truncated or corrupt); allowed: %(allowed)s."
             ) % {"allowed": allowed if limits else "-"}


def image_file_errors(
    spec: ModelSpec, fileobj: IO[bytes], *, label: str = ""
) -> tuple[list[str], dict]:
    """Check one image file's content with Pillow against ``spec``'s image limits: size,
    format, sides, pixels, transparency, truncation, decompression bombs.

    Returns ``(messages, info)`` where ``info`` has ``format``, ``width``,
    ``height``, ``size`` and ``content_type`` when the file is accepted. Uploaded files
    are refused with any transparency where the model refuses it (flatten them first).
    """
    prefix = f"{label}: " if label else ""
    if spec.images is None:
        return [prefix + _("%(model)s takes no images.") % {"model": spec.name}], {}
    problem, info = imagerules.check_image(
        spec.images, fileobj, any_format_alpha=True,
        default_max_bytes=DEFAULT_UPLOAD_MAX_BYTES,
    )
    if problem is None:
        return [], info
    return [prefix + _file_message(spec, problem)], {}
