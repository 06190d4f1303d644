"""One image file against one model's image limits (Pillow only, Django-free).

The app checks uploaded files with it and the emulator checks the images it downloads
from ``image_urls``, so both apply the same per-model limits of the catalogue: file size,
format judged by content, sides, total pixels, aspect ratio and transparency. A broken
rule comes back as a :class:`~.modelspec.Problem` (field ``image``) for the caller to put
into words.
"""

from __future__ import annotations

from typing import IO, Any

from PIL import Image, UnidentifiedImageError

from .modelspec import ImageLimits, Problem

#: Content types of the formats a checked image may have.
CONTENT_TYPES = {
    "JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp",
    "WEBP": "image/webp", "GIF": "image/gif", "TIFF": "image/tiff", "HEIF": "image/heif",
}
#: How Pillow names some formats that Evolink's docs name otherwise (MPO: camera JPEGs).
FORMAT_ALIASES = {"MPO": "JPEG"}


def has_alpha(img: Image.Image) -> bool:
    """Whether the image has an alpha channel or a transparent palette colour."""
    return img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info


def _problem(code: str, **args: Any) -> tuple[Problem, dict[str, Any]]:
    return Problem("image", code, args), {}


def check_image(
    limits: ImageLimits,
    fileobj: IO[bytes],
    *,
    any_format_alpha: bool = False,
    default_max_bytes: int | None = None,
) -> tuple[Problem | None, dict[str, Any]]:
    """Check one image; returns ``(problem or None, info)``.

    ``info`` (when the image is accepted) has ``format``, ``width``, ``height``,
    ``size`` and ``content_type``. Where the model refuses transparency, it is refused in
    the formats the docs name (``alpha_formats``; every format when none is named), or
    in every format with ``any_format_alpha``.
    ``default_max_bytes`` applies when the model states no file limit.
    """
    fileobj.seek(0, 2)
    size = fileobj.tell()
    fileobj.seek(0)
    max_bytes = limits.max_bytes if limits.max_bytes is not None else default_max_bytes
    if max_bytes is not None and size > max_bytes:
        return _problem("file_too_big", got=size, max=max_bytes,
                        max_mb=limits.max_file_mb or max_bytes / 1024 / 1024)
    if size == 0:
        return _problem("file_empty")
    allowed = limits.pillow_formats
    formats_text = limits.formats_text
    alpha_in = None if any_format_alpha else limits.alpha_formats
    try:
        with Image.open(fileobj) as img:
            fmt = (img.format or "").upper()
            fmt = FORMAT_ALIASES.get(fmt, fmt)
            width, height = img.size
            transparent = has_alpha(img)
            if allowed is not None and fmt not in allowed:
                return _problem("format", format=fmt or "unknown", allowed=formats_text)
            problem = _pixel_problem(limits, width, height)
            if problem is not None:
                return problem, {}
            img.load()  # decode fully: catches truncated files and decompression bombs
    except Image.DecompressionBombError:
        return _problem("bomb")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return _problem("unreadable", allowed=formats_text)
    finally:
        fileobj.seek(0)
    if limits.no_alpha and transparent and (alpha_in is None or fmt in alpha_in):
        return _problem("alpha", format=fmt)
    return None, {
        "format": fmt,
        "width": width,
        "height": height,
        "size": size,
        "content_type": CONTENT_TYPES.get(fmt, "application/octet-stream"),
    }


def _pixel_problem(limits: ImageLimits, width: int, height: int) -> Problem | None:
    """Sides, total pixels and aspect ratio, in that order."""
    args = {"width": width, "height": height}
    low, high = limits.min_side, limits.max_side
    if (low is not None and min(width, height) < low) or (
            high is not None and max(width, height) > high):
        side, value = _offending_side(width, height, low, high)
        return Problem("image", "sides", {**args, "min": low or 1, "max": high,
                                          "side": side, "value": value})
    if limits.min_side_gt is not None and min(width, height) <= limits.min_side_gt:
        side, value = _offending_side(width, height, limits.min_side_gt + 1, None)
        return Problem("image", "sides", {**args, "min": limits.min_side_gt + 1, "max": high,
                                          "side": side, "value": value})
    total = width * height
    if (limits.min_total_pixels is not None and total < limits.min_total_pixels) or (
            limits.max_total_pixels is not None and total > limits.max_total_pixels):
        return Problem("image", "pixels", {**args, "got": total, "min": limits.min_total_pixels,
                                           "max": limits.max_total_pixels})
    if limits.aspect_ratio_range is not None:
        ratio_low, ratio_high = limits.aspect_ratio_range
        if not ratio_low <= width / height <= ratio_high:
            return Problem("image", "ratio", {**args, "min": ratio_low, "max": ratio_high})
    return None


def _offending_side(width: int, height: int, low: int | None,
                    high: int | None) -> tuple[str, int]:
    for side, value in (("width", width), ("height", height)):
        if (low is not None and value < low) or (high is not None and value > high):
            return side, value
    return "width", width
