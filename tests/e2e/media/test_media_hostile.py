"""Hostile uploads: each refused with the right status, and nothing left behind.

"Nothing" is checked where it would be: the store (a directory's temporary
files included), `media_blobs`, `message_media` and the message's stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from api.http.app import create_app
from api.runtime.sealing import seal_key_path
from api.runtime.settings import Settings
from media.extent import trailing_bytes
from tests.support import images
from tests.support.asgi import IN_MODULE_LOOP, running
from tests.support.media import (
    MediaPlace,
    Part,
    blob_rows,
    key,
    link_rows,
    media_events,
    new_message,
    part,
    upload,
)

# An image larger than the default 5 MiB limit: noise does not compress.
OVERSIZE = images.png(size=(1400, 1400))
assert len(OVERSIZE) > 5 * 1024 * 1024

# A multi-picture JPEG cut where its first picture's stream ends.
_MPO = images.mpo(seed=20)
FIRST_OF_TWO = _MPO[: len(_MPO) - (trailing_bytes("JPEG", _MPO) or 0)]

HOSTILE: dict[str, tuple[Part, int]] = {
    "text named .png": (part(images.TEXT, "photo.png", "image/png"), 415),
    "pdf": (part(images.PDF, "scan.pdf", "application/pdf"), 415),
    "svg with a script": (part(images.SVG, "logo.svg", "image/svg+xml"), 415),
    "html": (part(images.HTML, "page.png", "image/png"), 415),
    "zip": (part(images.zip_file(), "archive.png", "image/png"), 415),
    "empty file": (part(b"", "empty.png"), 415),
    "truncated png": (part(images.png(seed=20)[:-120], "cut.png"), 415),
    "truncated jpeg": (part(images.jpeg(seed=20, size=(256, 256))[:-300], "cut.jpg"), 415),
    "animated gif cut in its last frame": (part(images.animated_gif(seed=20)[:-200], "c.gif"), 415),
    "gif cut inside an image descriptor": (
        part(images.gif(seed=20)[:-1] + b"\x2c\0\0", "d.gif"),
        415,
    ),
    "animated webp cut in its last frame": (
        part(images.animated_webp(seed=20)[:-90], "c.webp"),
        415,
    ),
    "multi-picture jpeg cut after the first": (part(FIRST_OF_TWO, "c.jpg"), 415),
    "png + zip appended": (part(images.png(seed=21) + images.zip_file(), "poly.png"), 415),
    "jpeg + zip appended": (part(images.jpeg(seed=21) + images.zip_file(), "poly.jpg"), 415),
    "gif + html appended": (part(images.gif(seed=21) + images.HTML, "poly.gif"), 415),
    "webp + zip appended": (part(images.webp(seed=21) + images.zip_file(), "poly.webp"), 415),
    "html + png prepended": (part(images.HTML + images.png(seed=21), "poly.html"), 415),
    "bmp": (part(images.encode(images.picture(), "BMP"), "old.bmp", "image/bmp"), 415),
    "tiff": (part(images.encode(images.picture(), "TIFF"), "scan.tiff", "image/tiff"), 415),
    "png declaring 20000x20000": (part(images.forged_png(20000, 20000), "bomb.png"), 413),
    "png declaring 8000x6000": (part(images.forged_png(8000, 6000), "big.png"), 413),
    "gif declaring 65535x65535": (part(images.forged_gif(65535, 65535), "bomb.gif"), 413),
    "over 5 MiB": (part(OVERSIZE, "huge.png"), 413),
    "text named ../../x.png": (part(images.TEXT, "../../x.png"), 415),
}


async def assert_nothing_left(
    pool: AsyncConnectionPool, media: MediaPlace, message_id: str, *uploaded: bytes
) -> None:
    assert await media.names() == []
    for data in uploaded:
        assert await blob_rows(pool, hashlib.sha256(data).hexdigest()) == 0
    assert await media_events(pool, message_id) == 0
    assert await link_rows(pool, message_id) == 0


# The hostile files, each refused, share one app per store kind: nothing any of
# them does is kept, so the store is as empty for the last as for the first.
@IN_MODULE_LOOP
@pytest.mark.parametrize("case", HOSTILE)
async def test_a_hostile_file_is_refused_and_leaves_nothing(
    module_client: httpx.AsyncClient,
    module_pool: AsyncConnectionPool,
    module_media: MediaPlace,
    case: str,
) -> None:
    (_, (filename, data, _)), status = HOSTILE[case]
    message_id = await new_message(module_client)

    response = await upload(module_client, message_id, HOSTILE[case][0])

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert f'file 1 ("{filename}")' in problem["detail"]  # the problem names the file
    assert (await module_client.get(f"/messages/{message_id}/media")).json() == {"items": []}
    await assert_nothing_left(module_pool, module_media, message_id, data)


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
async def test_a_bomb_between_pillows_limits_is_refused_when_its_warning_is_an_error(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    # 100 MP: Pillow warns rather than fails; run as an error, the warning is caught too.
    message_id = await new_message(client)
    response = await upload(client, message_id, part(images.forged_png(10000, 10000)))
    assert response.status_code == 413
    await assert_nothing_left(pool, media, message_id)


async def test_one_bad_file_refuses_the_whole_request(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    good = images.png(seed=22)
    message_id = await new_message(client)
    response = await upload(client, message_id, part(good, "ok.png"), part(images.PDF, "b.pdf"))
    assert response.status_code == 415
    assert 'file 2 ("b.pdf")' in response.json()["detail"]
    await assert_nothing_left(pool, media, message_id, good)


async def test_a_name_with_dot_dots_is_only_a_label(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, settings: Settings, media: MediaPlace
) -> None:
    # The name never reaches the file system or the bucket (bytes are named by
    # their hash), and the bytes are judged alone: a real image is accepted
    # where its hash says.
    data = images.png(seed=23)
    message_id = await new_message(client)
    response = await upload(client, message_id, part(data, "../../../../escape.png"))
    assert response.status_code == 201
    digest = hashlib.sha256(data).hexdigest()
    assert await media.names() == [key(digest)]
    # (The one other file is the key that signs the seals.)
    assert media.files_beside(settings.data_dir.parent) == [seal_key_path(settings)]
    assert await blob_rows(pool, digest) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"file": "x"}', "application/json", 415),
        (b"file=x", "application/x-www-form-urlencoded", 415),
        (b"--b\r\nnot a multipart body", "multipart/form-data; boundary=b", 422),
        (b"", "multipart/form-data; boundary=b", 422),
        (b"--b--\r\n", "multipart/form-data", 422),  # no boundary
    ],
)
async def test_a_body_that_is_not_a_form_is_refused(
    client: httpx.AsyncClient, media: MediaPlace, body: bytes, content_type: str, status: int
) -> None:
    message_id = await new_message(client)
    response = await client.post(
        f"/messages/{message_id}/media", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await media.names() == []


async def test_a_form_without_a_file_part_is_422(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    message_id = await new_message(client)
    response = await client.post(
        f"/messages/{message_id}/media",
        files=[("picture", ("a.png", images.png(seed=24), "image/png"))],
        data={"note": "hello"},
    )
    assert response.status_code == 422
    assert "'file'" in response.json()["detail"]
    await assert_nothing_left(pool, media, message_id)


async def test_more_than_ten_files_is_413(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    message_id = await new_message(client)
    parts = [part(images.png(seed=100 + i)) for i in range(11)]
    response = await upload(client, message_id, *parts)
    assert response.status_code == 413
    await assert_nothing_left(pool, media, message_id)


async def test_a_body_beyond_the_upload_limit_is_413_before_it_is_read(
    client: httpx.AsyncClient, media: MediaPlace
) -> None:
    message_id = await new_message(client)
    response = await client.post(
        f"/messages/{message_id}/media",
        content=b"x" * 1024,
        headers={
            "Content-Type": "multipart/form-data; boundary=b",
            "Content-Length": str(10**9),
        },
    )
    assert response.status_code == 413
    assert await media.names() == []


async def test_the_json_routes_keep_their_own_body_limit(client: httpx.AsyncClient) -> None:
    # The upload route's larger limit is its own: POST /messages still refuses
    # a body over SMSQ_MAX_BODY_BYTES (16 KiB).
    message_id = await new_message(client)
    big_json = {"from": "+14155550100", "to": "+447911123456", "message": "x" * 20_000}
    assert (await client.post("/messages", json=big_json)).status_code == 413
    image = images.png(seed=27, size=(320, 320))
    assert len(image) > 16 * 1024
    assert (await upload(client, message_id, part(image))).status_code == 201


@pytest.fixture
async def small_limit_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app: Litestar = create_app(msgspec.structs.replace(settings, max_media_bytes=4096))
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
            yield c


async def test_the_size_limit_is_configurable(
    small_limit_client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    small, large = images.png(seed=25, size=(8, 8)), images.png(seed=26, size=(64, 64))
    assert len(small) <= 4096 < len(large)
    message_id = await new_message(small_limit_client)
    refused = await upload(small_limit_client, message_id, part(large, "large.png"))
    assert refused.status_code == 413
    assert refused.json()["detail"] == 'file 1 ("large.png") is larger than 4,096 bytes'
    await assert_nothing_left(pool, media, message_id, large)
    accepted = await upload(small_limit_client, message_id, part(small))
    assert accepted.status_code == 201
