"""The database goes away and comes back; the service neither hangs nor needs a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.http.app import create_app
from api.runtime.embedded import ensure_database
from api.runtime.settings import Settings
from migrations import migrate
from tests.support.asgi import running
from tests.support.consistency import assert_folded_once
from tests.support.phones import random_phone
from tests.support.postgres import OwnServer

TIMEOUT = 1.0


@pytest.fixture
def server(cluster_path: Path) -> Iterator[OwnServer]:
    own = OwnServer(cluster_path)
    try:
        yield own
    finally:
        own.close()


@pytest.fixture
async def client(server: OwnServer) -> AsyncIterator[httpx.AsyncClient]:
    ensure_database(server.admin_url, "smsq")
    url = server.url("smsq")
    migrate(url)
    app = create_app(Settings(database_url=url, db_timeout=TIMEOUT))
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
            yield c


def body() -> dict[str, str]:
    return {"from": random_phone(), "to": "+447911123456", "message": "are you there?"}


async def until_status(client: httpx.AsyncClient, path: str, status: str, within: float) -> None:
    deadline = time.monotonic() + within
    while (await client.get(path)).json().get("status") != status:
        assert time.monotonic() < deadline, f"{path} never reached {status}"
        await asyncio.sleep(0.05)


async def test_requests_fail_fast_with_503_while_down_and_recover_alone(
    client: httpx.AsyncClient, server: OwnServer
) -> None:
    before = await client.post("/messages", json=body())
    assert before.status_code == 201

    server.stop()
    for request in (
        client.post("/messages", json=body()),
        client.get("/messages"),
        client.get(before.headers["location"]),
    ):
        started = time.monotonic()
        response = await request
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"]
        assert time.monotonic() - started < TIMEOUT + 1.5
    # /readyz answers from a probe made about once a second.
    deadline = time.monotonic() + 3
    while (await client.get("/readyz")).status_code != 503:
        assert time.monotonic() < deadline, "still ready"
        await asyncio.sleep(0.05)
    assert (await client.get("/healthz")).status_code == 200

    server.start()
    deadline = time.monotonic() + 15
    while (await client.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, "not ready again"
        await asyncio.sleep(0.1)
    after = await client.post("/messages", json=body())
    assert after.status_code == 201
    # The projectors reconnected too: the new message gets all the way through.
    await until_status(client, after.headers["location"], "processed", within=10)


async def test_a_killed_database_loses_no_acknowledged_message(
    client: httpx.AsyncClient, server: OwnServer
) -> None:
    created: list[str] = []
    stop, enough = asyncio.Event(), asyncio.Event()

    async def ingest() -> None:
        while not stop.is_set():
            response = await client.post("/messages", json=body())
            if response.status_code == 201:
                created.append(response.json()["id"])
                if len(created) >= 50:
                    enough.set()
            else:
                assert response.status_code == 503, response.text

    writers = [asyncio.create_task(ingest()) for _ in range(8)]
    await asyncio.wait_for(enough.wait(), 30)
    server.kill()
    await asyncio.sleep(TIMEOUT)
    server.start()
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*writers)

    assert len(created) >= 50
    await assert_folded_once(server.url("smsq"), created, within=30)
    print(f"PostgreSQL SIGKILLed after {len(created)} acknowledged messages: none lost")
