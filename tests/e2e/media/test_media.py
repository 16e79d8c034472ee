"""POST and GET /messages/{id}/media and GET /media/{sha256}, as the contract says."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from api.http.app import create_app
from api.runtime.settings import Settings
from media.store import CHUNK
from tests.support import images
from tests.support.asgi import IN_MODULE_LOOP, running
from tests.support.media import (
    MediaPlace,
    blob_rows,
    eventually,
    key,
    link_rows,
    media_events,
    new_message,
    part,
    upload,
)

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UNKNOWN = "0190b6a4-0000-7000-8000-000000000000"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


ENCODED: dict[str, tuple[Callable[[], bytes], str]] = {
    "png": (images.png, "image/png"),
    "animated png": (images.animated_png, "image/png"),
    "jpeg": (images.jpeg, "image/jpeg"),
    "progressive jpeg": (lambda: images.jpeg(progressive=True, optimize=True), "image/jpeg"),
    "multi-picture jpeg": (images.mpo, "image/jpeg"),
    "gif": (images.gif, "image/gif"),
    "animated gif": (images.animated_gif, "image/gif"),
    "webp": (images.webp, "image/webp"),
    "animated webp": (images.animated_webp, "image/webp"),
}


@pytest.mark.parametrize("kind", ENCODED)
async def test_an_image_is_attached_listed_and_served(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace, kind: str
) -> None:
    make, content_type = ENCODED[kind]
    data = make()
    message_id = await new_message(client)

    response = await upload(client, message_id, part(data, "picture.bin", "application/x-junk"))

    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/messages/{message_id}/media"
    (item,) = response.json()["items"]
    digest = sha(data)
    assert item == {
        "sha256": digest,
        "content_type": content_type,  # sniffed, not the client's
        "size": len(data),
        "width": 64,
        "height": 48,
        "url": f"/media/{digest}",
        "attached_at": item["attached_at"],
    }
    assert RFC3339_MS.match(item["attached_at"])

    listed = await client.get(f"/messages/{message_id}/media")  # at once: read-your-writes
    assert listed.status_code == 200
    assert listed.json() == {"items": [item]}

    served = await client.get(item["url"])
    assert served.status_code == 200
    assert served.content == data
    assert served.headers["content-type"] == content_type
    assert served.headers["etag"] == f'"{digest}"'
    assert served.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert served.headers["x-content-type-options"] == "nosniff"

    assert await media.names() == [key(digest)]
    assert (await media_events(pool, message_id), await blob_rows(pool, digest)) == (1, 1)


async def test_the_same_bytes_again_attach_nothing_new(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    data = images.png(seed=1)
    message_id = await new_message(client)
    first = await upload(client, message_id, part(data, "a.png"))
    again = await upload(client, message_id, part(data, "renamed.gif", "image/gif"))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()  # the same item, first attach time included
    assert await media_events(pool, message_id) == 1
    assert len(await media.names()) == 1


async def test_the_same_bytes_on_another_message_are_linked_not_stored_again(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    data = images.jpeg(seed=2)
    one, two = await new_message(client), await new_message(client)
    first = await upload(client, one, part(data))
    second = await upload(client, two, part(data))

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["items"][0]["sha256"] == second.json()["items"][0]["sha256"]
    assert (await media_events(pool, one), await media_events(pool, two)) == (1, 1)
    assert await blob_rows(pool, sha(data)) == 1
    assert len(await media.names()) == 1


async def test_several_files_keep_their_order_and_repeats_collapse(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    a, b, c = images.png(seed=3), images.gif(seed=4), images.webp(seed=5)
    message_id = await new_message(client)
    assert (await upload(client, message_id, part(b))).status_code == 201

    response = await upload(client, message_id, part(a), part(b), part(a), part(c))

    assert response.status_code == 201  # a and c are new; b was attached before
    assert [i["sha256"] for i in response.json()["items"]] == [sha(a), sha(b), sha(c)]
    listed = (await client.get(f"/messages/{message_id}/media")).json()["items"]
    assert [i["sha256"] for i in listed] == [sha(b), sha(a), sha(c)]  # attach order
    assert await media_events(pool, message_id) == 3
    assert len(await media.names()) == 3


async def test_the_read_model_catches_up_with_the_same_answer(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    message_id = await new_message(client)
    parts = [part(images.png(seed=6)), part(images.jpeg(seed=7))]
    created = await upload(client, message_id, *parts)
    assert created.status_code == 201

    async def folded() -> bool:
        message = (await client.get(f"/messages/{message_id}")).json()
        return bool(await link_rows(pool, message_id) == 2 and message["media_count"] == 2)

    await eventually(folded)
    listed = await client.get(f"/messages/{message_id}/media")
    assert listed.json() == created.json()


@IN_MODULE_LOOP
async def test_an_unchanged_image_is_not_sent_again(module_client: httpx.AsyncClient) -> None:
    message_id = await new_message(module_client)
    item = (await upload(module_client, message_id, part(images.png(seed=8)))).json()["items"][0]
    etag = f'"{item["sha256"]}"'
    for tag in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = await module_client.get(item["url"], headers={"If-None-Match": tag})
        assert cached.status_code == 304
        assert cached.content == b""
        assert cached.headers["etag"] == etag
    fresh = await module_client.get(item["url"], headers={"If-None-Match": '"other"'})
    assert fresh.status_code == 200


@IN_MODULE_LOOP
@pytest.mark.parametrize(
    "path",
    [
        f"/messages/{UNKNOWN}/media",
        "/messages/not-a-uuid/media",
        f"/media/{'0' * 64}",
        "/media/..%2F..%2Fetc%2Fpasswd",
    ],
)
async def test_what_does_not_exist_is_404(module_client: httpx.AsyncClient, path: str) -> None:
    response = await module_client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@IN_MODULE_LOOP
@pytest.mark.parametrize("name", ["abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65])
async def test_a_malformed_hash_is_422(module_client: httpx.AsyncClient, name: str) -> None:
    response = await module_client.get(f"/media/{name}")
    assert response.status_code == 422
    assert response.json()["status"] == 422


async def test_an_upload_to_an_unknown_message_is_404(
    client: httpx.AsyncClient, media: MediaPlace
) -> None:
    response = await upload(client, UNKNOWN, part(images.png()))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert await media.names() == []


async def test_uploads_are_listed_and_served_while_no_projector_runs(
    settings: Settings,
) -> None:
    # Read-your-writes does not lean on the projector: the stream answers the
    # list, and the blob row written with the event answers the bytes.
    still = msgspec.structs.replace(settings, run_projectors=False)
    async with running(create_app(still)) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
            message_id = await new_message(client)
            data = [images.png(seed=40), images.animated_gif(seed=41)]
            created = await upload(client, message_id, *(part(d) for d in data))
            assert created.status_code == 201
            listed = await client.get(f"/messages/{message_id}/media")
            assert listed.json() == created.json()
            for item, expected in zip(listed.json()["items"], data, strict=True):
                assert (await client.get(item["url"])).content == expected


async def test_bytes_missing_from_the_store_are_a_404(
    client: httpx.AsyncClient, media: MediaPlace
) -> None:
    message_id = await new_message(client)
    item = (await upload(client, message_id, part(images.png(seed=9)))).json()["items"][0]
    await media.remove(item["sha256"])
    response = await client.get(item["url"])
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "missing from the store" in response.json()["detail"]


async def test_a_large_image_is_sent_in_pieces_as_the_store_yields_them(
    app: Litestar, client: httpx.AsyncClient
) -> None:
    data = images.png(seed=10, size=(600, 600))  # noise: about 1 MiB
    message_id = await new_message(client)
    item = (await upload(client, message_id, part(data))).json()["items"][0]

    # The app called as the HTTP server calls it, to see each message it sends
    # (httpx's ASGI transport would join the body before handing it over).
    sent = await asgi_get(app, item["url"])

    start, *body = sent
    headers = dict(start["headers"])
    assert start["status"] == 200
    assert headers[b"content-length"] == str(len(data)).encode()
    assert headers[b"content-type"] == b"image/png"
    assert headers[b"etag"] == f'"{item["sha256"]}"'.encode()
    pieces = [m["body"] for m in body if m["body"]]
    assert b"".join(pieces) == data
    # Never the whole image at once: pieces of at least CHUNK bytes, as the
    # file is read or as the connection to the bucket delivers them.
    assert len(pieces) >= 4, [len(p) for p in pieces]
    assert min(len(p) for p in pieces[:-1]) >= CHUNK


async def asgi_get(app: Litestar, path: str) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"smsq.test")],
        "client": ("127.0.0.1", 50000),
        "server": ("smsq.test", 80),
    }

    requested, done = False, asyncio.Event()

    async def receive() -> dict[str, Any]:
        # The request, then, once the response is complete, the disconnect a
        # server reports then (Litestar's Stream waits for it).
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent
