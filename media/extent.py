"""Where an image's bytes end, by the structure of its format.

Bytes after that end are no part of the image: a zip, a script or an HTML
page appended to a picture (a polyglot) still decodes as the picture, so the
decoder alone cannot tell. Nor can it tell a file cut short when it decodes
only the first frame of an animation: a walk that runs out of bytes before
the end the format requires (IEND, the GIF trailer, EOI, the RIFF size)
finds the file truncated. Each walk only skips what the format declares
(chunk lengths, sub-block sizes, segment lengths, entropy-coded data up to
the next marker); the decoder has already judged the content.
"""

from __future__ import annotations

from collections.abc import Callable


def trailing_bytes(image_format: str, data: bytes) -> int | None:
    """How many bytes follow the end of the image (`image_format` as Pillow
    names it); None when the data end before the image does."""
    end = _ENDS[image_format](data)
    return None if end is None or end > len(data) else len(data) - end


def _png_end(data: bytes) -> int | None:
    pos = 8  # the signature
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            return pos
    return None


def _webp_end(data: bytes) -> int:
    # RIFF: "RIFF", the size of everything after these 8 bytes, "WEBP", chunks.
    return 8 + int.from_bytes(data[4:8], "little")


def _gif_end(data: bytes) -> int | None:
    if len(data) < 13:
        return None
    pos: int | None = 13 + _color_table(data[10])  # header, logical screen descriptor
    while pos is not None and pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            return pos + 1
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _sub_blocks(data, pos + 2)
        elif block == 0x2C:  # image: descriptor, local color table, LZW size, sub-blocks
            if pos + 10 > len(data):
                return None
            pos = _sub_blocks(data, pos + 10 + _color_table(data[pos + 9]) + 1)
        else:
            return pos
    return None


def _color_table(packed: int) -> int:
    return 3 << ((packed & 7) + 1) if packed & 0x80 else 0


def _sub_blocks(data: bytes, pos: int) -> int | None:
    """Past the terminating empty sub-block; None when the data end first."""
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos
    return None


def _jpeg_end(data: bytes) -> int | None:
    return _jpeg_stream_end(data, 0)


def _mpo_end(data: bytes) -> int | None:
    """A multi-picture JPEG: complete JPEG streams back to back."""
    end = _jpeg_stream_end(data, 0)
    while end is not None and data.startswith(b"\xff\xd8", end):
        end = _jpeg_stream_end(data, end)
    return end


_EOI, _SOS = 0xD9, 0xDA
_NO_LENGTH = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and the restart markers


def _jpeg_stream_end(data: bytes, start: int) -> int | None:
    """Past the stream's EOI marker; None when the data end first."""
    pos: int | None = start + 2  # SOI
    end = len(data)
    while pos is not None and pos < end:
        # Bytes that are not a marker are skipped, as libjpeg does with a warning.
        pos = data.find(b"\xff", pos)
        while 0 <= pos < end and data[pos] == 0xFF:
            pos += 1  # fill bytes
        if pos < 0 or pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            return pos
        if marker in _NO_LENGTH:
            continue
        if pos + 2 > end:
            break
        pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == _SOS:
            pos = _entropy_coded_end(data, pos)
    return None


def _entropy_coded_end(data: bytes, pos: int) -> int | None:
    """The next marker after a scan: FF 00 is a stuffed byte, FF D0-D7 a restart."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            return None
        following = data[pos + 1]
        if following != 0 and not 0xD0 <= following <= 0xD7:
            return pos
        pos += 2


_ENDS: dict[str, Callable[[bytes], int | None]] = {
    "PNG": _png_end,
    "WEBP": _webp_end,
    "GIF": _gif_end,
    "JPEG": _jpeg_end,
    "MPO": _mpo_end,
}
