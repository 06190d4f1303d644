"""Input image checks and result image rendering (Pillow only, no Django)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..evolink.imagerules import check_image
from ..evolink.modelspec import ImageLimits, Problem

#: Largest input image when the model states no limit (the files API's 50 MB).
DEFAULT_MAX_INPUT_BYTES = 50 * 1024 * 1024
#: Formats accepted by the files API (section 5): jpeg, png, gif, webp.
UPLOAD_FORMATS = {
    "JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
    "WEBP": "image/webp",
}
RESULT_SIZE = (1024, 1024)


class ImageRuleError(ValueError):
    """An input image breaks one of the model's rules; the message says which."""


def max_input_bytes(limits: ImageLimits | None) -> int:
    """The download limit of one input image of a model."""
    return (limits.max_bytes if limits and limits.max_bytes else None) or DEFAULT_MAX_INPUT_BYTES


#: Evolink's English for each image problem (``imagerules`` codes), by code.
_MESSAGES = {
    "file_too_big": "{label}: the image is {size} bytes, larger than the {max_mb:g} MB limit "
                    "({max} bytes)",
    "format": "{label}: unsupported image format {fmt} (supported formats: {formats})",
    "alpha": "{label}: {fmt} images with a transparency (alpha) channel are not supported",
    "sides": "{label}: image {side} {value} px is outside the allowed range [{min}, {high}] px "
             "(image is {width}x{height})",
    "pixels": "{label}: the image has {got} pixels, outside the allowed range "
              "[{low_pixels}, {high}]",
    "ratio": "{label}: the aspect ratio {width}:{height} is outside [{min}, {max}]",
}
_UNREADABLE = "{label}: the content is not a readable image (supported formats: {formats})"


def _message(problem: Problem, label: str, limits: ImageLimits, size: int) -> str:
    args = dict(problem.args)
    facts = {
        **args, "label": label, "size": size,
        "formats": ", ".join(limits.formats or ()) or "any image",
        "fmt": str(args.get("format", "")).lower(),
        "high": "∞" if args.get("max") is None else args["max"],
        "low_pixels": args.get("min") or 1,
    }
    return _MESSAGES.get(problem.code, _UNREADABLE).format(**facts)


def check_input_image(data: bytes, label: str, limits: ImageLimits) -> Image.Image:
    """Check one downloaded input image against the model's image limits; return it.

    ``label`` names the image in messages (``"image_urls[1]"``). The limits come from the
    catalogue (for wan2.5-image-to-image, the seed's: at most 10 MB; jpeg/png/bmp/webp
    judged by content; png without transparency; sides in [384, 5000] px).
    """
    problem, _info = check_image(limits, io.BytesIO(data),
                                 default_max_bytes=DEFAULT_MAX_INPUT_BYTES)
    if problem is not None:
        raise ImageRuleError(_message(problem, label, limits, len(data)))
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def sniff_upload(data: bytes) -> tuple[str, str] | None:
    """(extension, mime type) of an uploadable image (jpeg/png/gif/webp), else None."""
    try:
        image = Image.open(io.BytesIO(data))
        image.verify()
    except Exception:
        return None
    mime = UPLOAD_FORMATS.get(image.format or "")
    if mime is None:
        return None
    return mime.split("/")[1].replace("jpeg", "jpg"), mime


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no size argument
        return ImageFont.load_default()


def _draw_text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    text: str,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    fill: tuple[int, int, int],
) -> None:
    try:
        draw.text(xy, text, font=font, fill=fill)
    except (UnicodeError, ValueError):  # the bitmap fallback font is latin-1 only
        draw.text(xy, text.encode("ascii", "replace").decode(), font=font, fill=fill)


def compose(inputs: Sequence[Image.Image]) -> Image.Image:
    """The inputs side by side, each scaled to the same height."""
    height = 768
    tiles = []
    for image in inputs:
        rgb = image.convert("RGB")
        width = max(1, round(rgb.width * height / rgb.height))
        tiles.append(rgb.resize((width, height)))
    canvas = Image.new("RGB", (sum(t.width for t in tiles) or height, height), "white")
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, 0))
        x += tile.width
    return canvas


#: One transform per output index, so the ``n`` outputs differ.
TRANSFORMS = (
    ("original", lambda im: im),
    ("mirrored", ImageOps.mirror),
    ("flipped", ImageOps.flip),
    ("posterized", lambda im: ImageOps.posterize(im, 3)),
)


def render_result(inputs: Sequence[bytes], prompt: str, index: int, n: int,
                  size: tuple[int, int] = RESULT_SIZE) -> bytes:
    """Result image ``index`` (0-based) of a task, as PNG bytes, ``size`` pixels.

    The inputs are composed side by side, fitted to ``size``, transformed (a different
    transform per index) and captioned with the prompt. Text-to-image results are a
    plain background with the caption.
    """
    images = [Image.open(io.BytesIO(data)) for data in inputs]  # validated at create
    base = compose(images) if images else Image.new("RGB", size, (90, 90, 120))
    base = ImageOps.fit(base, size)
    name, transform = TRANSFORMS[index % len(TRANSFORMS)]
    out = transform(base).convert("RGB")
    draw = ImageDraw.Draw(out)
    lines = textwrap.wrap(prompt, width=70)[:5] or [""]
    band_top = max(0, size[1] - 24 - 32 * len(lines))
    draw.rectangle((0, band_top, size[0], size[1]), fill=(0, 0, 0))
    font = _font(26)
    for i, line in enumerate(lines):
        _draw_text(draw, (16, band_top + 12 + 32 * i), line, font, (255, 255, 255))
    _draw_text(
        draw, (16, 16), f"Evolink emulator - {index + 1}/{n} ({name})", _font(22), (255, 255, 0)
    )
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
