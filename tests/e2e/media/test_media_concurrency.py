"""The same bytes uploaded at once: one file, one blob row, one event per message.

First inside one process (uploads in flight together on one event loop, each
on its own database connection and file-writing thread or S3 request), then
spread over two `smsq serve` processes sharing the database and the store.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.support import images
from tests.support.media import (
    MediaPlace,
    blob_rows,
    eventually,
    key,
    link_rows,
    media_events,
    media_place,
    new_message,
    part,
    upload,
)
from tests.support.servers import serving


async def ten_to_one(clients: list[httpx.AsyncClient], pool: AsyncConnectionPool) -> bytes:
    data = images.jpeg(seed=30, size=(320, 240))
    message_id = await new_message(clients[0])
    responses = await asyncio.gather(
        *(upload(clients[i % len(clients)], message_id, part(data)) for i in range(10))
    )
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 9}
    assert len({r.text for r in responses}) == 1  # the same item, the same attach time
    assert await media_events(pool, message_id) == 1
    assert await blob_rows(pool, hashlib.sha256(data).hexdigest()) == 1
    return data


async def ten_to_ten(clients: list[httpx.AsyncClient], pool: AsyncConnectionPool) -> bytes:
    data = images.jpeg(seed=31, size=(320, 240))
    messages = [await new_message(clients[0]) for _ in range(10)]
    responses = await asyncio.gather(
        *(upload(clients[i % len(clients)], m, part(data)) for i, m in enumerate(messages))
    )
    assert [r.status_code for r in responses] == [201] * 10
    assert [await media_events(pool, m) for m in messages] == [1] * 10
    assert await blob_rows(pool, hashlib.sha256(data).hexdigest()) == 1

    async def linked() -> bool:
        return [await link_rows(pool, m) for m in messages] == [1] * 10

    await eventually(linked)
    return data


Race = Callable[[list[httpx.AsyncClient], AsyncConnectionPool], Awaitable[bytes]]


async def assert_one_file(media: MediaPlace, data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    names = await media.names()
    assert [n for n in names if n.endswith(digest)] == [key(digest)]
    assert [n for n in names if "/." in f"/{n}"] == []  # no temporary file left


async def test_ten_uploads_of_one_image_to_one_message_at_once(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    await assert_one_file(media, await ten_to_one([client], pool))


async def test_ten_uploads_of_one_image_to_ten_messages_at_once(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, media: MediaPlace
) -> None:
    await assert_one_file(media, await ten_to_ten([client], pool))


@pytest.fixture(scope="module")
def shared(
    store_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> MediaPlace:
    return media_place(store_kind, tmp_path_factory.mktemp("shared") / "data", request)


@contextmanager
def together(servers: list[AbstractContextManager[str]]) -> Iterator[list[str]]:
    """Start the servers at once, a thread each, and stop them so: a start is
    about a second of one core's work, which the other core need not wait for."""
    with ThreadPoolExecutor(max_workers=len(servers)) as threads:
        started = [threads.submit(s.__enter__) for s in servers]
        wait(started)
        try:
            yield [s.result() for s in started]
        finally:
            stops = [
                threads.submit(s.__exit__, None, None, None)
                for s, start in zip(servers, started, strict=True)
                if start.exception() is None
            ]
            for stop in stops:
                stop.result()


@pytest.fixture(scope="module")
def two_servers(database_url: str, shared: MediaPlace) -> Iterator[list[str]]:
    env = {"SMSQ_DATABASE_URL": database_url, "SMSQ_LOG_LEVEL": "WARNING", **shared.env()}
    logs = shared.data_dir.parent
    with together([serving(env, logs / "a.log"), serving(env, logs / "b.log")]) as urls:
        yield urls


@pytest.mark.parametrize("race", [ten_to_one, ten_to_ten], ids=["one message", "ten messages"])
async def test_the_same_races_over_two_processes(
    two_servers: list[str], pool: AsyncConnectionPool, shared: MediaPlace, race: Race
) -> None:
    async with (
        httpx.AsyncClient(base_url=two_servers[0], timeout=30) as a,
        httpx.AsyncClient(base_url=two_servers[1], timeout=30) as b,
    ):
        data = await race([a, b], pool)
    await assert_one_file(shared, data)
