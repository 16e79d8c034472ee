"""Judging an upload from its bytes alone: which image it is, and whether it may be kept.

Never the file name, never the client's Content-Type. Pillow only tries the
allowed formats, reads the header, and the pixel limit is checked before a
single pixel is decoded; then the file is verified, its first frame decoded
and its end found (the file must reach it, and nothing may follow it).
CPU-bound: call it off the event loop.
"""

from __future__ import annotations

import hashlib
import io

import msgspec
from PIL import Image as Pillow
from PIL import UnidentifiedImageError

from domain.commands import Image
from media.extent import trailing_bytes

MAX_PIXELS = 40_000_000

# Pillow's format names; MPO is how it names a JPEG that holds several pictures.
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
}
_OPEN_AS = ("JPEG", "PNG", "GIF", "WEBP")
ALLOWED = "JPEG, PNG, GIF or WebP"


class ImageInfo(msgspec.Struct, frozen=True):
    format: str
    content_type: str
    width: int
    height: int


class NotAnImage(Exception):
    """Not one of the allowed formats, or not a sound file of its format.

    Its message, like TooManyPixels', completes a sentence whose subject is the file.
    """


class TooManyPixels(Exception):
    pass


def probe(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    image_format = None
    try:
        with Pillow.open(io.BytesIO(data), formats=_OPEN_AS) as image:
            width, height = image.size
            image_format = str(image.format)
            _check_pixels(image, max_pixels)
            image.verify()
        # verify() leaves the image unusable: decode from a fresh open.
        with Pillow.open(io.BytesIO(data), formats=_OPEN_AS) as image:
            _decode_small(image, image_format)
        if image_format == "MPO":
            # Each picture of the sequence is a JPEG of its own, where the
            # sequence's index says: decode the last one too, so that a file
            # cut after its first picture is not taken for whole.
            with Pillow.open(io.BytesIO(data), formats=_OPEN_AS) as image:
                image.seek(getattr(image, "n_frames", 1) - 1)
                _check_pixels(image, max_pixels)  # a picture of its own, of its own size
                _decode_small(image, image_format)
    except (Pillow.DecompressionBombError, Pillow.DecompressionBombWarning):
        # Pillow's own guard, which fires while the header is read: its limit is
        # above ours, so the image is far too large for us as well.
        raise TooManyPixels(f"has far more than {max_pixels:,} pixels, the most allowed") from None
    except TooManyPixels:
        raise
    except UnidentifiedImageError:
        raise NotAnImage(f"is not a {ALLOWED} image") from None
    except Exception as error:
        # A hostile file can make a decoder fail in many ways (OSError,
        # SyntaxError, ValueError, struct.error, ...): each means the same.
        reason = str(error)[:100] or type(error).__name__
        raise NotAnImage(f"is not a sound {image_format or 'image'} file ({reason})") from None
    trailing = trailing_bytes(image_format, data)
    if trailing is None:
        raise NotAnImage(f"is a truncated {image_format} file: it ends before its image does")
    if trailing:
        raise NotAnImage(f"has {trailing} bytes after the end of its {image_format} image")
    return ImageInfo(image_format, CONTENT_TYPES[image_format], width, height)


def _check_pixels(image: Pillow.Image, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise TooManyPixels(
            f"is {width}x{height} pixels; at most {max_pixels:,} pixels are allowed"
        )


def _decode_small(image: Pillow.Image, image_format: str) -> None:
    if image_format in ("JPEG", "MPO"):
        # Decoding at an eighth of the size still reads every byte of the
        # scan, at a sixty-fourth of the memory.
        image.draft(image.mode, (1, 1))
    image.load()


def examine(data: bytes, max_pixels: int = MAX_PIXELS) -> Image:
    info = probe(data, max_pixels)
    return Image(
        sha256=hashlib.sha256(data).hexdigest(),
        content_type=info.content_type,
        format=info.format,
        size=len(data),
        width=info.width,
        height=info.height,
    )
