"""Images made by real encoders (Pillow), and hostile files made by hand."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

from PIL import Image


def picture(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    """Noise, so that no two seeds encode to the same bytes."""
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, image_format, **options)
    return out.getvalue()


def png(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    return encode(picture(size, seed), "PNG")


def jpeg(seed: int = 0, size: tuple[int, int] = (64, 48), **options: object) -> bytes:
    return encode(picture(size, seed), "JPEG", **options)


def gif(seed: int = 0) -> bytes:
    return encode(picture(seed=seed).convert("P"), "GIF")


def animated_gif(seed: int = 0) -> bytes:
    frames = [picture(seed=seed + i).convert("P") for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def webp(seed: int = 0) -> bytes:
    return encode(picture(seed=seed), "WEBP")


def animated_webp(seed: int = 0) -> bytes:
    frames = [picture(seed=seed + i) for i in range(3)]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=80)


def animated_png(seed: int = 0) -> bytes:
    frames = [picture(seed=seed + i) for i in range(3)]
    return encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=80)


def mpo(seed: int = 0) -> bytes:
    """A multi-picture JPEG, as stereo cameras write them."""
    return encode(picture(seed=seed), "MPO", save_all=True, append_images=[picture(seed=seed + 1)])


def jpeg_of_bytes(target: int, seed: int = 0) -> bytes:
    """A square JPEG of noise of about `target` bytes (the side is searched for)."""
    low, high = 8, 4096
    while low < high:
        side = (low + high) // 2
        if len(jpeg(seed, (side, side), quality=90)) < target:
            low = side + 1
        else:
            high = side
    return jpeg(seed, (low, low), quality=90)


def forged_png(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` but holds one row of data:
    a decompression bomb's header, cheap to build."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def forged_gif(width: int, height: int) -> bytes:
    """A GIF whose logical screen is `width` x `height`."""
    data = bytearray(gif())
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def zip_file() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.txt", "not an image " * 20)
    return out.getvalue()


PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b'<script>alert(1)</script><rect width="64" height="64"/></svg>'
)
HTML = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"
TEXT = b"This is a text file with a .png name.\n"


def exif() -> bytes:
    """EXIF data carrying a whole JPEG, end marker included, as a thumbnail does:
    the outer image does not end there."""
    data = Image.Exif()
    data[0x0110] = "Test camera"
    return data.tobytes() + jpeg(size=(16, 12))
