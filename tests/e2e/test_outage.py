"""The database goes away and comes back; the service neither hangs nor needs a restart."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Iterator

import httpx
import psycopg
import pytest

from api.http.app import create_app
from api.runtime.embedded import ensure_database
from api.runtime.settings import Settings
from migrations import migrate
from tests.support.asgi import running
from tests.support.consistency import assert_folded_once
from tests.support.phones import random_phone
from tests.support.postgres import OwnServer, own_server, unique_name

TIMEOUT = 1.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[OwnServer]:
    """One server for the module, each test on a database of its own: making
    and first starting a cluster takes longer than any outage here."""
    with own_server() as own:
        yield own


@pytest.fixture
def server(cluster: OwnServer) -> OwnServer:
    """The module's server, up: a test that failed mid-outage may have left it down."""
    try:
        psycopg.connect(cluster.admin_url, connect_timeout=5).close()
    except psycopg.OperationalError:
        cluster.start()
    return cluster


@pytest.fixture
def database(server: OwnServer) -> str:
    name = unique_name("smsq")
    ensure_database(server.admin_url, name)
    url = server.url(name)
    migrate(url)
    return url


@pytest.fixture
async def client(database: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=database, db_timeout=TIMEOUT))
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
            yield c


_SENT = itertools.count()


def body() -> dict[str, str]:
    # A text of its own too: two random numbers that happen to repeat within
    # 2 s with one text are one message by contract (200, the first one), which
    # the writers below would take for a wrong answer.
    return {
        "from": random_phone(),
        "to": "+447911123456",
        "message": f"are you there? {next(_SENT)}",
    }


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

    async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = await request
        return response, time.monotonic() - started

    # All at once, each timed on its own: every one fails fast, and together
    # they cost one wait for the database, not three.
    answers = await asyncio.gather(
        timed(client.post("/messages", json=body())),
        timed(client.get("/messages")),
        timed(client.get(before.headers["location"])),
    )
    for response, seconds in answers:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"]
        assert seconds < TIMEOUT + 1.5
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
    client: httpx.AsyncClient, server: OwnServer, database: str
) -> None:
    created: list[str] = []
    stop, enough = asyncio.Event(), asyncio.Event()

    async def ingest() -> None:
        while not stop.is_set():
            sent = body()
            response = await client.post("/messages", json=sent)
            if response.status_code == 201:
                created.append(response.json()["id"])
                if len(created) >= 50:
                    enough.set()
            else:
                assert response.status_code == 503, (sent, response.text)

    writers = [asyncio.create_task(ingest()) for _ in range(8)]
    await asyncio.wait_for(enough.wait(), 30)
    server.kill()
    await asyncio.sleep(TIMEOUT)
    server.start()
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*writers)

    assert len(created) >= 50
    await assert_folded_once(database, created, within=30)
    print(f"PostgreSQL SIGKILLed after {len(created)} acknowledged messages: none lost")
