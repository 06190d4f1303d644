"""background/png_chunks.py: a PNG's chunks checked against their CRCs as its bytes
arrive, with what Pillow's verify() finds."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from django_evolink.background.png_chunks import SIGNATURE, PngChunkCheck
from tests.conftest import make_image_bytes


def _png(side: int = 300) -> bytes:
    # noisy pixels: several IDAT chunks of incompressible data
    return make_image_bytes(side, side, "PNG", noisy=True)


def _fed(data: bytes, piece: int) -> PngChunkCheck:
    check = PngChunkCheck()
    for start in range(0, len(data), piece):
        check.feed(data[start:start + piece])
    return check


def _pillow_finds_it_broken(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Exception:
        return True
    return False


@pytest.mark.parametrize("piece", [1, 7, 8, 13, 4096, 65536, 10**9])
def test_an_intact_png_passes_whatever_the_pieces_it_arrives_in(piece):
    data = _png()
    assert len(data) > 3 * 8192  # more than one IDAT chunk
    check = _fed(data, piece)
    assert check.is_png is True and check.problem() is None


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_a_damaged_byte_anywhere_is_found_as_pillow_finds_it(where):
    damaged = bytearray(_png())
    damaged[int(len(damaged) * where)] ^= 0x01
    assert _pillow_finds_it_broken(bytes(damaged))
    check = _fed(bytes(damaged), 4096)
    assert "does not match its CRC" in check.problem()


@pytest.mark.parametrize("cut", [1, 12, 40, 5000])
def test_a_png_cut_short_is_reported(cut):
    check = _fed(_png()[:-cut], 4096)
    assert check.is_png is True
    assert check.problem() is not None


def test_bytes_after_iend_are_ignored_as_pillow_ignores_them():
    data = _png() + b"trailing garbage"
    assert not _pillow_finds_it_broken(data)
    assert _fed(data, 4096).problem() is None


def test_other_formats_are_not_pngs():
    for fmt in ("JPEG", "WEBP", "GIF"):
        check = _fed(make_image_bytes(40, 40, fmt), 3)
        assert check.is_png is False, fmt
    assert PngChunkCheck().is_png is None  # nothing fed yet


def test_a_chunk_declaring_more_than_the_specification_allows_is_refused():
    header = struct.pack(">I4s", 0x80000000, b"IDAT")
    check = _fed(SIGNATURE + header + b"\0" * 100, 4096)
    assert "declares" in check.problem()


def test_an_empty_chunk_is_checked_too():
    iend = struct.pack(">I4sI", 0, b"IEND", zlib.crc32(b"IEND"))
    assert _fed(SIGNATURE + iend, 1).problem() is None
    wrong = struct.pack(">I4sI", 0, b"IEND", zlib.crc32(b"IEND") ^ 1)
    assert "IEND" in _fed(SIGNATURE + wrong, 1).problem()
