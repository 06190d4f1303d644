"""Input image checks and result image rendering (Pillow only, no Django)."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps

#: Largest accepted input image, bytes (10 MB).
MAX_INPUT_BYTES = 10 * 1024 * 1024
MIN_SIDE = 384
MAX_SIDE = 5000
#: Pillow format name -> how Evolink names it. MPO is how Pillow reads some camera JPEGs.
INPUT_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "BMP": "bmp", "WEBP": "webp"}
#: Formats accepted by the files API (section 5): jpeg, png, gif, webp.
UPLOAD_FORMATS = {
    "JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif",
    "WEBP": "image/webp",
}
RESULT_SIZE = (1024, 1024)


class ImageRuleError(ValueError):
    """An input image breaks one of Evolink's rules; the message says which."""


def check_input_image(data: bytes, label: str) -> Image.Image:
    """Check one downloaded input image against the rules of the seed; return it.

    ``label`` names the image in messages (``"image_urls[1]"``). Rules: at most 10 MB;
    jpeg/png/bmp/webp judged by content; png without transparency; width and height each
    in [384, 5000] pixels.
    """
    if len(data) > MAX_INPUT_BYTES:
        raise ImageRuleError(
            f"{label}: the image is {len(data)} bytes, larger than the 10 MB limit "
            f"({MAX_INPUT_BYTES} bytes)"
        )
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception:
        raise ImageRuleError(
            f"{label}: the content is not a readable image "
            "(supported formats: jpeg, jpg, png, bmp, webp)"
        )
    fmt = image.format or "unknown"
    if fmt not in INPUT_FORMATS:
        raise ImageRuleError(
            f"{label}: unsupported image format {fmt.lower()} "
            "(supported formats: jpeg, jpg, png, bmp, webp)"
        )
    if fmt == "PNG" and (image.mode in ("RGBA", "LA", "PA", "La", "RGBa")
                         or "transparency" in image.info):
        raise ImageRuleError(
            f"{label}: png images with a transparency (alpha) channel are not supported"
        )
    width, height = image.size
    for side, value in (("width", width), ("height", height)):
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise ImageRuleError(
                f"{label}: image {side} {value} px is outside the allowed range "
                f"[{MIN_SIDE}, {MAX_SIDE}] px (image is {width}x{height})"
            )
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


def render_result(inputs: Sequence[bytes], prompt: str, index: int, n: int) -> bytes:
    """Result image ``index`` (0-based) of a task, as PNG bytes.

    The inputs are composed side by side, fitted to 1024x1024, transformed (a different
    transform per index) and captioned with the prompt.
    """
    images = [Image.open(io.BytesIO(data)) for data in inputs]  # validated at create
    base = compose(images) if images else Image.new("RGB", RESULT_SIZE, (90, 90, 120))
    base = ImageOps.fit(base, RESULT_SIZE)
    name, transform = TRANSFORMS[index % len(TRANSFORMS)]
    out = transform(base).convert("RGB")
    draw = ImageDraw.Draw(out)
    lines = textwrap.wrap(prompt, width=70)[:5] or [""]
    band_top = RESULT_SIZE[1] - 24 - 32 * len(lines)
    draw.rectangle((0, band_top, RESULT_SIZE[0], RESULT_SIZE[1]), fill=(0, 0, 0))
    font = _font(26)
    for i, line in enumerate(lines):
        _draw_text(draw, (16, band_top + 12 + 32 * i), line, font, (255, 255, 255))
    _draw_text(
        draw, (16, 16), f"Evolink emulator - {index + 1}/{n} ({name})", _font(22), (255, 255, 0)
    )
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
