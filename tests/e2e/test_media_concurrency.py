"""The same bytes uploaded at once: one file, one blob row, one event per message.

First inside one process (uploads in flight together on one event loop, each
on its own database connection and file-writing thread), then spread over
two `smsq serve` processes sharing the database and the media directory.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from api.runtime.settings import Settings
from tests.support import images
from tests.support.media import (
    blob_rows,
    eventually,
    link_rows,
    media_events,
    new_message,
    part,
    stored_files,
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


def assert_one_file(root: Path, data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    files = stored_files(root)
    assert [p for p in files if p.name == digest] == [root / digest[:2] / digest[2:4] / digest]
    assert [p for p in files if p.name.startswith(".")] == []  # no temporary file left


async def test_ten_uploads_of_one_image_to_one_message_at_once(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, settings: Settings
) -> None:
    assert_one_file(settings.data_dir / "media", await ten_to_one([client], pool))


async def test_ten_uploads_of_one_image_to_ten_messages_at_once(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, settings: Settings
) -> None:
    assert_one_file(settings.data_dir / "media", await ten_to_ten([client], pool))


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="module")
def two_servers(database_url: str, shared_data: Path) -> Iterator[list[str]]:
    env = {
        "SMSQ_DATABASE_URL": database_url,
        "SMSQ_DATA_DIR": str(shared_data / "data"),
        "SMSQ_LOG_LEVEL": "WARNING",
    }
    with serving(env, shared_data / "a.log") as a, serving(env, shared_data / "b.log") as b:
        yield [a, b]


@pytest.mark.parametrize("race", [ten_to_one, ten_to_ten], ids=["one message", "ten messages"])
async def test_the_same_races_over_two_processes(
    two_servers: list[str], pool: AsyncConnectionPool, shared_data: Path, race: Race
) -> None:
    async with (
        httpx.AsyncClient(base_url=two_servers[0], timeout=30) as a,
        httpx.AsyncClient(base_url=two_servers[1], timeout=30) as b,
    ):
        data = await race([a, b], pool)
    assert_one_file(shared_data / "data" / "media", data)
