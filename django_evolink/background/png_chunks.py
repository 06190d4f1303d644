"""Checking a PNG's chunks against their CRCs while its bytes arrive.

A result image is checked before it is stored: for a PNG that means every chunk's CRC up
to ``IEND``, which is what Pillow's ``verify()`` does once the file is on disk - reading
the whole file a second time, after the download, when the CPU is all that is left to
wait for. :class:`PngChunkCheck` does the same on the download's chunks as they arrive
(the CRC of each piece computed while the next is on its way), so the check costs no
wall time of its own and the file is read once. Bytes after ``IEND`` are ignored, as
Pillow ignores them.
"""

from __future__ import annotations

import struct
import zlib

#: The eight bytes every PNG file starts with.
SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The largest chunk length the PNG specification allows (2**31 - 1).
MAX_CHUNK_LENGTH = 0x7FFFFFFF

_HEADER, _DATA, _CRC, _DONE = range(4)


class PngChunkCheck:
    """Feed it a download's bytes in order (:meth:`feed`); then :attr:`is_png` says
    whether they start with the PNG signature and :meth:`problem` what is wrong with
    them as a PNG (None when every chunk up to ``IEND`` matched its CRC)."""

    def __init__(self) -> None:
        #: None until 8 bytes arrived; then whether they are the PNG signature.
        self.is_png: bool | None = None
        self._pending = bytearray()  # an incomplete signature, chunk header or CRC
        self._state = _HEADER
        self._type = b""
        self._left = 0  # bytes of the current chunk's data still to come
        self._crc = 0
        self._error: str | None = None

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the file."""
        if self.is_png is False or self._error is not None or self._state == _DONE:
            return
        view = memoryview(data)
        if self.is_png is None:
            view = self._take_signature(view)
        while view and self._error is None and self._state != _DONE:
            if self._state == _DATA:
                piece = view[: self._left]
                self._crc = zlib.crc32(piece, self._crc)
                self._left -= len(piece)
                view = view[len(piece):]
                if not self._left:
                    self._state = _CRC
            else:
                view = self._take_fixed(view, 8 if self._state == _HEADER else 4)

    def problem(self) -> str | None:
        """Why the bytes fed so far are not a whole, intact PNG (for a PNG)."""
        if self._error is not None:
            return self._error
        if self._state != _DONE:
            return "the PNG ends before its IEND chunk"
        return None

    # ------------------------------------------------------------------- internals
    def _take_signature(self, view: memoryview) -> memoryview:
        need = len(SIGNATURE) - len(self._pending)
        self._pending += view[:need]
        if len(self._pending) == len(SIGNATURE):
            self.is_png = bytes(self._pending) == SIGNATURE
            self._pending.clear()
        return view[need:]

    def _take_fixed(self, view: memoryview, size: int) -> memoryview:
        """Collect a chunk's 8-byte header or its 4-byte CRC, then act on it."""
        need = size - len(self._pending)
        self._pending += view[:need]
        if len(self._pending) < size:
            return view[len(view):]
        fixed = bytes(self._pending)
        self._pending.clear()
        if self._state == _HEADER:
            length, self._type = struct.unpack(">I4s", fixed)
            if length > MAX_CHUNK_LENGTH:
                self._error = f"a PNG chunk declares {length} bytes"
                return view[need:]
            self._crc = zlib.crc32(self._type)
            self._left = length
            self._state = _DATA if length else _CRC
        else:
            (expected,) = struct.unpack(">I", fixed)
            if expected != self._crc & 0xFFFFFFFF:
                name = self._type.decode("latin-1")
                self._error = f"the PNG chunk {name!r} does not match its CRC"
            else:
                self._state = _DONE if self._type == b"IEND" else _HEADER
        return view[need:]
