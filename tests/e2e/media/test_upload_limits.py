"""What uploads may take: images per message (409), the store's budget (507), and
uploads in flight per process (503), each refused with nothing written."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import httpx
import msgspec
import pytest
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from api.http.app import create_app
from api.runtime.settings import Settings
from tests.support import images
from tests.support.asgi import running
from tests.support.media import (
    MediaPlace,
    blob_rows,
    key,
    media_events,
    new_message,
    part,
    scalar,
    upload,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, object] = response.json()
    assert (problem["status"], problem["type"]) == (status, f"/problems/{slug}")
    return problem


@pytest.fixture
def limits() -> dict[str, int]:
    """Settings a test changes (by parametrizing this)."""
    return {}


@pytest.fixture
async def limited(settings: Settings, limits: dict[str, int]) -> AsyncIterator[Litestar]:
    async with running(create_app(msgspec.structs.replace(settings, **limits))) as app:
        yield app


@pytest.fixture
async def client(limited: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
        yield c


async def test_the_eleventh_image_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    ten = [images.png(seed=400 + i) for i in range(10)]
    message_id = await new_message(client)
    assert (await upload(client, message_id, *(part(d) for d in ten))).status_code == 201
    eleventh = images.png(seed=410)

    refused = await upload(client, message_id, part(eleventh, "one-more.png"))

    problem = assert_problem(refused, 409, "too-many-images")
    assert "has 10 images and 10 is the most" in str(problem["detail"])
    listed = (await client.get(f"/messages/{message_id}/media")).json()["items"]
    assert [i["sha256"] for i in listed] == [sha(d) for d in ten]
    assert await media_events(pool, message_id) == 10
    # Refused before a byte was written: not in the store, no row.
    assert key(sha(eleventh)) not in await media.names()
    assert await blob_rows(pool, sha(eleventh)) == 0
    # What the message has already is no image more: the same upload again is a 200.
    assert (await upload(client, message_id, part(ten[3]))).status_code == 200


async def test_images_that_would_pass_the_limit_together_are_all_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    message_id = await new_message(client)
    nine = [images.png(seed=420 + i) for i in range(9)]
    assert (await upload(client, message_id, *(part(d) for d in nine))).status_code == 201
    three = [images.png(seed=430 + i) for i in range(3)]

    refused = await upload(client, message_id, *(part(d) for d in three))

    assert_problem(refused, 409, "too-many-images")
    assert await media_events(pool, message_id) == 9
    assert not {key(sha(d)) for d in three} & set(await media.names())
    assert (await upload(client, message_id, part(three[0]))).status_code == 201
    assert await media_events(pool, message_id) == 10


@pytest.mark.parametrize("limits", [{"max_media_per_message": 2}])
async def test_the_limit_is_a_setting(client: httpx.AsyncClient) -> None:
    message_id = await new_message(client)
    two = [part(images.png(seed=440 + i)) for i in range(2)]
    assert (await upload(client, message_id, *two)).status_code == 201
    assert_problem(
        await upload(client, message_id, part(images.png(seed=442))), 409, "too-many-images"
    )


ROOM = 40_000


async def test_past_the_budget_uploads_are_507_and_messages_still_accepted(
    settings: Settings, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    # The module's tests share a database: the budget leaves ROOM bytes beyond
    # what the store holds now.
    stored = int(await scalar(pool, "SELECT bytes FROM media_usage"))
    budgeted = msgspec.structs.replace(settings, media_budget_bytes=stored + ROOM)
    async with running(create_app(budgeted)) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
            await _fill_the_budget(client, pool, media, stored)


async def _fill_the_budget(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace, stored: int
) -> None:
    # The stores share the module's database: each its own images, new to it.
    seed = 450 if media.kind == "local" else 460
    first = images.png(seed=seed, size=(80, 80))
    assert 0 < len(first) < ROOM
    message_id = await new_message(client)
    assert (await upload(client, message_id, part(first))).status_code == 201
    assert int(await scalar(pool, "SELECT bytes FROM media_usage")) == stored + len(first)

    # One that would pass the budget: refused before it is written.
    too_much = images.png(seed=seed + 1, size=(100, 100))
    assert len(too_much) > ROOM - len(first)
    refused = await upload(client, message_id, part(too_much, "big.png"))
    problem = assert_problem(refused, 507, "media-full")
    assert "messages are still accepted" in str(problem["detail"])
    assert key(sha(too_much)) not in await media.names()
    assert await blob_rows(pool, sha(too_much)) == 0

    # Bytes the store holds already cost nothing: attached to another message, 201.
    another = await new_message(client)
    assert (await upload(client, another, part(first))).status_code == 201
    # And messages are accepted as ever.
    await new_message(client)


class Held:
    """An upload whose body stops after its first piece until released: it holds
    its place among the uploads in flight for as long as the test wants."""

    def __init__(self, client: httpx.AsyncClient, message_id: str, data: bytes) -> None:
        request = client.build_request("POST", f"/messages/{message_id}/media", files=[part(data)])
        self.body = request.read()
        self.headers = {
            "Content-Type": request.headers["content-type"],
            "Content-Length": str(len(self.body)),
        }
        self.reading, self.release = asyncio.Event(), asyncio.Event()
        self.task = asyncio.create_task(
            client.post(request.url, content=self._pieces(), headers=self.headers)
        )

    async def _pieces(self) -> AsyncIterator[bytes]:
        yield self.body[:100]
        self.reading.set()  # asked for more: the upload was admitted and is reading
        await self.release.wait()
        yield self.body[100:]

    async def done(self) -> httpx.Response:
        self.release.set()
        return await self.task


@pytest.mark.parametrize("limits", [{"max_uploads_in_flight": 2}])
async def test_uploads_past_the_cap_are_503_before_their_body_is_read(
    client: httpx.AsyncClient, limited: Litestar
) -> None:
    message_id = await new_message(client)
    held = [Held(client, message_id, images.png(seed=480 + i)) for i in range(2)]
    await asyncio.gather(*(h.reading.wait() for h in held))

    refused = await upload(client, message_id, part(images.png(seed=482)))

    problem = assert_problem(refused, 503, "uploads-busy")
    assert refused.headers["retry-after"] == "1"
    assert "2 uploads are in flight" in str(problem["detail"])
    assert [(await h.done()).status_code for h in held] == [201, 201]
    # Their places are free again.
    assert limited.state.services.uploads.uploads == 0
    assert (await upload(client, message_id, part(images.png(seed=482)))).status_code == 201


@pytest.mark.parametrize("limits", [{"max_upload_bytes_in_flight": 60_000}])
async def test_uploads_past_the_bytes_in_flight_are_503(client: httpx.AsyncClient) -> None:
    message_id = await new_message(client)
    big = images.png(seed=470, size=(120, 120))
    assert 30_000 < len(big) < 60_000
    held = Held(client, message_id, big)
    await held.reading.wait()

    refused = await upload(client, message_id, part(images.png(seed=471, size=(120, 120))))
    assert_problem(refused, 503, "uploads-busy")
    assert refused.headers["retry-after"] == "1"
    # A smaller one fits beside it.
    assert (await upload(client, message_id, part(images.png(seed=472)))).status_code == 201
    assert (await held.done()).status_code == 201
