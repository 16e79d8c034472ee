"""GET /events/stream against a real `smsq serve`: every committed event once, in
reading order, across reconnects; one connection for any number of clients;
a client that stops reading is cut off."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from urllib.parse import urlparse

import httpx
import msgspec
import psycopg
import pytest
from uuid_utils.compat import uuid7

from domain.events import EventMetadata, SmsReceived, stream_of
from tests.support.phones import random_phone
from tests.support.postgres import Databases
from tests.support.seed import copy_events, message_events
from tests.support.servers import local_async_client, serving

HEARTBEAT = 0.3
# Waited out whole by the test of a client that never reads, so short; yet far
# longer than a reading client, even on a loaded machine, takes to accept a
# 64 KiB piece: the other tests' readers are never dropped as stuck ones.
WRITE_TIMEOUT = 2
# How long a transaction holds an early position before it commits: several
# heart-beats and the reader's one-second poll, while the writers go on.
HELD = 2


def feed_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, **settings: str
) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("feed")
    env = {
        "SMSQ_DATABASE_URL": database_url,
        "SMSQ_DATA_DIR": str(workdir / "data"),
        "SMSQ_LOG_LEVEL": "WARNING",
        "SMSQ_FEED_HEARTBEAT": str(HEARTBEAT),
        "SMSQ_FEED_WRITE_TIMEOUT": str(WRITE_TIMEOUT),
        **settings,
    }
    with serving(env, workdir / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def feed_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from feed_server(database_url, tmp_path_factory)


@pytest.fixture
def feed_only_database(databases: Databases) -> str:
    """A database only feed_only_url's server connects to (the module's server
    keeps running beside it, and its pools on its own database)."""
    return databases.create()


@pytest.fixture
def feed_only_url(
    feed_only_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server whose only database connections are its pool's (two at most),
    its listener's and its feed's: no projectors, whose pool grows and shrinks
    with their own work."""
    yield from feed_server(
        feed_only_database, tmp_path_factory, SMSQ_RUN_PROJECTORS="false", SMSQ_POOL_MAX="2"
    )


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, str, str]]:
    """(id, event, data) of each message; comments (heart-beats) as ("", "", "")."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield "", "", ""
        elif line == "":
            if fields:
                yield fields.get("id", ""), fields.get("event", ""), fields.get("data", "")
            fields = {}
        else:
            name, _, value = line.partition(": ")
            fields[name] = value


async def log_positions(url: str, after: int = 0, event_type: str | None = None) -> list[int]:
    """Every event after `after` (of `event_type`, if given), in reading order,
    as GET /events pages it."""
    positions: list[int] = []
    params: dict[str, str | int] = {"limit": 1000} | ({"type": event_type} if event_type else {})
    async with local_async_client(url, timeout=10) as client:
        while True:
            page = (await client.get("/events", params={**params, "after": after})).json()
            positions += [e["position"] for e in page["items"]]
            if not page["items"]:
                return positions
            after = page["next_after"]


async def insert_one(conn: psycopg.AsyncConnection) -> None:
    """An event inserted in `conn`'s open transaction, as a writer would."""
    event = SmsReceived(
        message_id=uuid7(),
        from_=random_phone(),
        to="+447911123456",
        message="feed",
        received_at=datetime.now(UTC),
    )
    meta = EventMetadata(correlation_id=event.message_id, causation_id=event.message_id)
    await conn.execute(
        "INSERT INTO events (stream_id, version, event_id, type, data, metadata)"
        " VALUES (%s, 1, %s, %s, %s, %s)",
        (
            stream_of(event.message_id),
            event.message_id,
            event.TYPE,
            msgspec.json.encode(event).decode(),
            msgspec.json.encode(meta).decode(),
        ),
    )


async def test_every_committed_event_arrives_once_in_reading_order_across_reconnects(
    feed_url: str, database_url: str
) -> None:
    start = (await log_positions(feed_url))[-1:] or [0]
    stop = asyncio.Event()

    async def writer(seed: int) -> None:
        rng = random.Random(seed)
        async with local_async_client(feed_url, timeout=10) as client:
            while not stop.is_set():
                body = {"from": random_phone(), "to": "+447911123456", "message": f"w{seed}"}
                assert (await client.post("/messages", json=body)).status_code == 201
                await asyncio.sleep(rng.uniform(0, 0.02))

    async def rolled_back() -> None:
        # Positions taken and never committed: gaps the feed must not wait for.
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            while not stop.is_set():
                await insert_one(conn)
                await conn.rollback()
                await asyncio.sleep(0.01)

    async def held_open() -> None:
        # An early position committed HELD seconds late: delivered in its place,
        # after the events whose transactions began later but committed first.
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await insert_one(conn)
            await asyncio.sleep(HELD)
            await conn.commit()

    # The messages the test writes, and no others: the server's processing
    # stage appends an SmsProcessed for each, and goes on doing so after the
    # writers stop, for as long as it lags (seconds, on a loaded machine).
    # Counting those too, the log's end moved on while the test read it.
    stream = f"/events/stream?type={SmsReceived.TYPE}"
    seen: list[int] = []
    rng = random.Random(7)

    async def reader() -> None:
        last = start[0]
        async with httpx.AsyncClient(base_url=feed_url, timeout=30) as client:
            while not stop.is_set() or len(seen) < 3:
                # Disconnect at a random moment, resume from the last id seen.
                budget = rng.randint(1, 40)
                headers = {"Last-Event-ID": str(last)}
                async with client.stream("GET", stream, headers=headers) as response:
                    assert response.status_code == 200
                    async for event_id, _, _ in sse(response):
                        if event_id:
                            seen.append(int(event_id))
                            last = int(event_id)
                            budget -= 1
                        # Once the writers stop, it reads on until it has its few events
                        # (breaking at the first heartbeat would reconnect for ever).
                        if budget <= 0 or (stop.is_set() and len(seen) >= 3):
                            break

    tasks = [asyncio.create_task(writer(i)) for i in range(8)]
    tasks += [asyncio.create_task(rolled_back()), asyncio.create_task(held_open())]
    reading = asyncio.create_task(reader())
    # Writing goes on well past the late commit: the reader follows, and
    # reconnects, in the live flow after it as well as through the backlog.
    await asyncio.sleep(HELD + 1.5)
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.wait_for(reading, 30)

    # Then read on to the last one written: everything committed, once, in
    # order. If one never comes, the comparison below shows which.
    expected = await log_positions(feed_url, start[0], SmsReceived.TYPE)
    async with (
        httpx.AsyncClient(base_url=feed_url, timeout=30) as client,
        client.stream("GET", stream, headers={"Last-Event-ID": str(seen[-1])}) as response,
    ):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                async for event_id, _, _ in sse(response):
                    if event_id:
                        seen.append(int(event_id))
                    elif seen[-1] == expected[-1]:
                        break
    assert seen == expected
    assert len(seen) > 100


async def server_connections(database_url: str) -> Counter[str]:
    """The server's connections to its database, by the role each names."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        return Counter(name for (name,) in await cur.fetchall())


async def test_two_hundred_clients_share_one_database_connection(
    feed_only_url: str, feed_only_database: str
) -> None:
    feed_url, database_url = feed_only_url, feed_only_database
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
    # From the log's end (its own database's log is empty): the clients wait,
    # they do not read a backlog.
    path = f"/events/stream?after={(await log_positions(feed_url) or [0])[-1]}"
    async with httpx.AsyncClient(base_url=feed_url, timeout=30, limits=limits) as client:
        ready = asyncio.Barrier(201)
        release = asyncio.Event()

        async def one() -> None:
            async with client.stream("GET", path) as r:
                assert r.status_code == 200
                lines = sse(r)
                await anext(lines)
                await ready.wait()
                await release.wait()
                await anext(lines)  # still followed: the next heart-beat arrives

        async with asyncio.TaskGroup() as group:
            for _ in range(200):
                group.create_task(one())
            await asyncio.wait_for(ready.wait(), 60)
            during = await server_connections(database_url)
            release.set()
    # The pool and the listener open in the background, so they may not all be
    # there yet; whichever are, the clients add none: one reader serves them all.
    assert during["smsq-feed"] == 1, during
    assert during["smsq-api"] <= 2, during
    assert during["smsq-listener"] <= 1, during
    assert set(during) <= {"smsq-feed", "smsq-api", "smsq-listener"}, during


async def followers(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    (line,) = [line for line in text.splitlines() if line.startswith("smsq_feed_followers ")]
    return float(line.split()[1])


async def test_a_client_that_never_reads_is_dropped_with_its_memory(
    feed_url: str, database_url: str
) -> None:
    address = urlparse(feed_url)
    assert address.hostname is not None
    assert address.port is not None
    # The small receive buffer is set before connecting, so that the window is
    # small from the handshake on: set after, it leaves the server sending
    # segments larger than the buffer, which are dropped and sent again ever
    # more slowly, and what the server buffered could not be read to its end.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((address.hostname, address.port))
    sock.sendall(b"GET /events/stream HTTP/1.1\r\nHost: smsq\r\n\r\n")
    async with httpx.AsyncClient(base_url=feed_url, timeout=10) as client:
        deadline = time.monotonic() + 10
        while await followers(client) < 1:
            assert time.monotonic() < deadline, "the stream never started"
            await asyncio.sleep(0.05)
        # Far more than the socket buffers and the follower's queue hold.
        with psycopg.connect(database_url) as conn:
            written = copy_events(conn, message_events(12_000, seed=random.randrange(10**6)))
        # Nothing is read meanwhile: within the write timeout the server stops
        # writing to it and lets go of what it held for it.
        deadline = time.monotonic() + 30
        while await followers(client) > 0:
            assert time.monotonic() < deadline, "the server kept a client that did not read"
            await asyncio.sleep(0.2)
        # Still not reading, past the time the server waits on a stuck write.
        await asyncio.sleep(WRITE_TIMEOUT + 2)
        # What it was sent is what the socket buffers took and its queue held,
        # far from the whole flood (some 650 bytes per event as sent), and then
        # nothing more: no heart-beat either (a second is three of them), its
        # stream is over.
        sock.settimeout(1)
        received = 0
        deadline = time.monotonic() + 30
        with contextlib.suppress(TimeoutError):
            while (chunk := sock.recv(65536)) and time.monotonic() < deadline:
                received += len(chunk)
        sock.close()
        assert time.monotonic() < deadline, "the server kept writing to it"
        assert 0 < received < written * 300
        # The server serves on, and a client that reads gets the flood.
        async with client.stream("GET", "/events/stream?after=0&type=SmsReceived") as response:
            assert response.status_code == 200
            async for event_id, _, _ in sse(response):
                if event_id:
                    break
