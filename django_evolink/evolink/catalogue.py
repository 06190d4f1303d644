"""The model catalogue: per-model input rules, in one place.

Adding an Evolink model is adding a :class:`ModelSpec` to :data:`CATALOGUE`. The
REST serializers, ``services.create_task``, the upload checks and the management
commands all validate through the functions here, so their messages agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import IO, Any

from django.utils.translation import gettext as _

from .. import conf
from ..exceptions import EvolinkValidationError
from . import url_policy
from .payloads import NUL, unstorable_text

#: Characters never valid in a URL (controls, NUL, space); NUL also breaks PostgreSQL.
_CONTROL_CHARS = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class ModelSpec:
    """What one Evolink model accepts (from its API document)."""

    name: str
    prompt_max_chars: int = 2000
    min_images: int = 1
    max_images: int = 2
    n_min: int = 1
    n_max: int = 4
    default_n: int = 1
    image_max_bytes: int = 10 * 1024 * 1024
    image_formats: tuple[str, ...] = ("JPEG", "PNG", "BMP", "WEBP")
    allow_transparency: bool = False
    min_side: int = 384
    max_side: int = 5000
    url_max_chars: int = 2048

    @property
    def formats_text(self) -> str:
        return ", ".join(f.lower() for f in self.image_formats)


#: Models django-evolink knows, by Evolink's model name.
CATALOGUE: dict[str, ModelSpec] = {
    "wan2.5-image-to-image": ModelSpec(name="wan2.5-image-to-image"),
}


def get_spec(model: str | None) -> ModelSpec:
    """The spec of ``model`` (default: ``EVOLINK['DEFAULT_MODEL']``)."""
    name = model or conf.get("DEFAULT_MODEL")
    try:
        return CATALOGUE[name]
    except (KeyError, TypeError):
        raise EvolinkValidationError(
            {
                "model": [
                    _("Unknown model %(model)r. Allowed: %(allowed)s.")
                    % {"model": name, "allowed": ", ".join(sorted(CATALOGUE))}
                ]
            }
        )


def text_errors(value: Any, *, prefix: str = "") -> list[str]:
    """Messages for client text no database can store: NUL characters (PostgreSQL
    refuses them) and lone surrogates (not valid Unicode, so not encodable as UTF-8).

    Every create entry point (REST JSON and multipart, ``services.create_task``, the
    commands, the admin) validates through this module, so none of them can reach the
    database with such text and answer a 500.
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


def prompt_errors(spec: ModelSpec, prompt: Any) -> list[str]:
    if not isinstance(prompt, str) or not prompt.strip():
        return [
            _("A prompt is required (1 to %(max)d characters).") % {"max": spec.prompt_max_chars}
        ]
    errors = text_errors(prompt, prefix=_("The prompt: "))
    if errors:
        # refused here rather than failing when saving (PostgreSQL, UTF-8 encoding)
        return errors
    if len(prompt) > spec.prompt_max_chars:
        return [
            _("At most %(max)d characters for %(model)s (got %(got)d).")
            % {"max": spec.prompt_max_chars, "model": spec.name, "got": len(prompt)}
        ]
    return []


def n_errors(spec: ModelSpec, n: Any) -> list[str]:
    if isinstance(n, bool) or not isinstance(n, int) or not spec.n_min <= n <= spec.n_max:
        return [
            _("n must be a whole number from %(min)d to %(max)d for %(model)s.")
            % {"min": spec.n_min, "max": spec.n_max, "model": spec.name}
        ]
    return []


def count_errors(spec: ModelSpec, count: int) -> list[str]:
    if count < spec.min_images:
        return [
            _("At least %(min)d image for %(model)s.")
            % {"min": spec.min_images, "model": spec.name}
        ]
    if count > spec.max_images:
        return [
            _("At most %(max)d images for %(model)s.")
            % {"max": spec.max_images, "model": spec.name}
        ]
    return []


def image_url_errors(spec: ModelSpec, image_urls: Any, *, resolve: bool = True) -> list[str]:
    """Messages for a list of reference image URLs (count, type, scheme, address)."""
    if not isinstance(image_urls, (list, tuple)):
        return [_("image_urls must be a list of 1 to %(max)d URLs.") % {"max": spec.max_images}]
    errors = count_errors(spec, len(image_urls))
    if errors:
        return errors
    for i, url in enumerate(image_urls, start=1):
        if not isinstance(url, str) or not url:
            errors.append(_("Image %(i)d: a URL string is required.") % {"i": i})
            continue
        unstorable = text_errors(url, prefix=_("Image %(i)d: ") % {"i": i})
        if unstorable:
            errors.extend(unstorable)
            continue
        if _CONTROL_CHARS.search(url):
            errors.append(
                _("Image %(i)d: URLs must not contain control characters or spaces.") % {"i": i}
            )
            continue
        if len(url) > spec.url_max_chars:
            errors.append(
                _("Image %(i)d: URLs are at most %(max)d characters.")
                % {"i": i, "max": spec.url_max_chars}
            )
            continue
        problem = url_policy.check_url(url, resolve=resolve)
        if problem:
            errors.append(_("Image %(i)d: %(problem)s") % {"i": i, "problem": problem})
    return errors


def validate_request(
    *,
    prompt: Any,
    image_urls: Any,
    n: Any = None,
    model: str | None = None,
    resolve: bool = True,
) -> dict[str, Any]:
    """Check a whole create request; return the cleaned values or raise.

    Raises :class:`EvolinkValidationError` with field-keyed messages that say what
    is allowed. Nothing is sent to Evolink.
    """
    spec = get_spec(model)
    n = spec.default_n if n is None else n
    errors: dict[str, list[str]] = {}
    for field, messages in (
        ("prompt", prompt_errors(spec, prompt)),
        ("image_urls", image_url_errors(spec, image_urls, resolve=resolve)),
        ("n", n_errors(spec, n)),
    ):
        if messages:
            errors[field] = messages
    if errors:
        raise EvolinkValidationError(errors)
    return {"model": spec.name, "prompt": prompt, "image_urls": list(image_urls), "n": n}


def image_file_errors(
    spec: ModelSpec, fileobj: IO[bytes], *, label: str = ""
) -> tuple[list[str], dict]:
    """Check one image file's content with Pillow: size, format, transparency, sides.

    Returns ``(messages, info)`` where ``info`` has ``format``, ``width``,
    ``height``, ``size`` and ``content_type`` when the file could be read.
    """
    from PIL import Image, UnidentifiedImageError

    prefix = f"{label}: " if label else ""
    fileobj.seek(0, 2)
    size = fileobj.tell()
    fileobj.seek(0)
    if size > spec.image_max_bytes:
        return (
            [
                prefix
                + _("The file is %(got).1f MB; at most %(max)d MB is allowed.")
                % {"got": size / 1024 / 1024, "max": spec.image_max_bytes // (1024 * 1024)}
            ],
            {},
        )
    if size == 0:
        return [prefix + _("The file is empty.")], {}
    try:
        with Image.open(fileobj) as img:
            fmt = (img.format or "").upper()
            width, height = img.size
            mode = img.mode
            has_alpha = (
                mode in ("RGBA", "LA", "PA")
                or (mode == "P" and "transparency" in img.info)
                or "transparency" in img.info
            )
            if fmt not in spec.image_formats:
                return (
                    [
                        prefix
                        + _("Format %(fmt)s is not accepted; allowed: %(allowed)s.")
                        % {"fmt": fmt or "unknown", "allowed": spec.formats_text}
                    ],
                    {},
                )
            if not (
                spec.min_side <= width <= spec.max_side and spec.min_side <= height <= spec.max_side
            ):
                return (
                    [
                        prefix
                        + _(
                            "The image is %(w)dx%(h)d px; width and height must each be "
                            "from %(min)d to %(max)d px."
                        )
                        % {"w": width, "h": height, "min": spec.min_side, "max": spec.max_side}
                    ],
                    {},
                )
            img.load()  # decode fully: catches truncated files and decompression bombs
    except Image.DecompressionBombError:
        return [prefix + _("The image has too many pixels to be decoded safely.")], {}
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return (
            [
                prefix
                + _(
                    "The file is not a readable image (truncated or corrupt); allowed: %(allowed)s."
                )
                % {"allowed": spec.formats_text}
            ],
            {},
        )
    finally:
        fileobj.seek(0)
    if has_alpha and not spec.allow_transparency:
        return (
            [
                prefix
                + _(
                    "Images with transparency (an alpha channel) are not accepted; "
                    "flatten the image first."
                )
            ],
            {},
        )
    content_type = {
        "JPEG": "image/jpeg",
        "PNG": "image/png",
        "BMP": "image/bmp",
        "WEBP": "image/webp",
    }.get(fmt, "application/octet-stream")
    return [], {
        "format": fmt,
        "width": width,
        "height": height,
        "size": size,
        "content_type": content_type,
    }
