"""Judging bytes: real encoders' output is accepted, everything else is not."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.extent import trailing_bytes
from media.probe import NotAnImage, TooManyPixels, examine, probe
from tests.support import images

JPEG, PNG, GIF, WEBP = "image/jpeg", "image/png", "image/gif", "image/webp"

GOOD: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "png": (images.png, "PNG", PNG),
    "animated png": (images.animated_png, "PNG", PNG),
    "jpeg": (images.jpeg, "JPEG", JPEG),
    "progressive jpeg": (lambda: images.jpeg(progressive=True, optimize=True), "JPEG", JPEG),
    "jpeg with restart markers": (lambda: images.jpeg(restart_marker_blocks=1), "JPEG", JPEG),
    "jpeg with exif": (lambda: images.jpeg(exif=images.exif()), "JPEG", JPEG),
    "multi-picture jpeg": (images.mpo, "MPO", JPEG),
    "gif": (images.gif, "GIF", GIF),
    "animated gif": (images.animated_gif, "GIF", GIF),
    "webp": (images.webp, "WEBP", WEBP),
    "lossless webp": (lambda: images.encode(images.picture(), "WEBP", lossless=True), "WEBP", WEBP),
    "animated webp": (images.animated_webp, "WEBP", WEBP),
}


@pytest.mark.parametrize("kind", GOOD)
def test_real_encoders_output_is_accepted_for_what_it_is(kind: str) -> None:
    make, image_format, content_type = GOOD[kind]
    data = make()
    info = probe(data)
    assert (info.format, info.content_type, info.width, info.height) == (
        image_format,
        content_type,
        64,
        48,
    )
    assert trailing_bytes(image_format, data) == 0


def test_examine_adds_the_hash_and_the_size() -> None:
    data = images.png(seed=9)
    image = examine(data)
    assert (image.sha256, image.size) == (hashlib.sha256(data).hexdigest(), len(data))


@pytest.mark.parametrize(
    "data",
    [
        images.TEXT,
        images.PDF,
        images.SVG,
        images.HTML,
        images.zip_file(),
        b"",
        images.encode(images.picture(), "BMP"),
        images.encode(images.picture(), "TIFF"),
        images.encode(images.picture(), "ICO"),
        images.HTML + images.png(),
    ],
    ids=["text", "pdf", "svg", "html", "zip", "empty", "bmp", "tiff", "ico", "html+png"],
)
def test_what_is_not_an_allowed_format_is_refused(data: bytes) -> None:
    with pytest.raises(NotAnImage, match="is not a JPEG, PNG, GIF or WebP image"):
        probe(data)


@pytest.mark.parametrize("kind", GOOD)
def test_no_file_cut_short_is_taken_for_whole(kind: str) -> None:
    make, image_format, _ = GOOD[kind]
    data = make()
    whole = [n for n in range(len(data)) if trailing_bytes(image_format, data[:n]) is not None]
    if image_format == "MPO":
        # Cut just after its first picture, a multi-picture JPEG is a whole
        # JPEG stream (and a byte): only the probe can see the rest missing.
        first = len(data) - (trailing_bytes("JPEG", data) or 0)
        assert set(whole) <= {first, first + 1}
    else:
        assert whole == []
    # The probe itself at cuts spread over the file, and in its last bytes.
    cuts = {
        *range(0, len(data), max(1, len(data) // 60)),
        *range(len(data) - 24, len(data)),
        *whole,
    }
    for n in sorted(cuts):
        with pytest.raises(NotAnImage):
            probe(data[:n])


@pytest.mark.parametrize("kind", GOOD)
def test_anything_after_the_image_is_refused(kind: str) -> None:
    make, image_format, _ = GOOD[kind]
    with pytest.raises(NotAnImage, match=f"has 380 bytes after the end of its {image_format}"):
        probe(make() + images.zip_file())


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(GOOD)), st.binary(min_size=1, max_size=64))
def test_the_end_of_an_image_is_found_whatever_follows(kind: str, suffix: bytes) -> None:
    make, image_format, _ = GOOD[kind]
    if image_format == "MPO" and suffix.startswith(b"\xff\xd8"):
        return  # another picture of the sequence, not a suffix
    assert trailing_bytes(image_format, make() + suffix) == len(suffix)


@pytest.mark.parametrize(
    "data",
    [
        images.forged_png(8000, 6000),
        images.forged_png(20000, 20000),
        images.forged_gif(65535, 9000),
    ],
    ids=["48 MP", "400 MP", "590 MP gif"],
)
def test_too_many_pixels_are_refused_before_decoding(data: bytes) -> None:
    with pytest.raises(TooManyPixels):
        probe(data)


def test_the_pixel_limit_is_inclusive() -> None:
    data = images.png(size=(40, 25))
    assert probe(data, max_pixels=1000).width == 40
    with pytest.raises(TooManyPixels, match="is 40x25 pixels; at most 999 pixels"):
        probe(data, max_pixels=999)


def test_each_picture_of_a_multi_picture_jpeg_is_held_to_the_pixel_limit() -> None:
    small, large = images.picture((16, 16)), images.picture((100, 100), seed=1)
    data = images.encode(small, "MPO", save_all=True, append_images=[large])
    assert probe(data, max_pixels=10_000).width == 16
    with pytest.raises(TooManyPixels, match="is 100x100 pixels"):
        probe(data, max_pixels=9_999)
