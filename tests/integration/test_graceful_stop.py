"""Stopping the projectors mid-way: each finishes its batch, checkpoints, and lets go."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

import projections.runner as runner_module
from api.runtime.embedded import ensure_database
from migrations import migrate
from projections.catalog import projectors
from projections.messages import MessagesProjector
from projections.replay import replay
from projections.runner import ProjectionRunner, catch_up
from tests.support.postgres import Databases, OwnServer
from tests.support.seed import seed_messages

# About 4,800 events, nearly ten of the runner's batches of 500: the stop,
# right after the first batch is seen, leaves most of them unfolded, and the
# closing catch-up and replay stay short.
MESSAGES = 3_000


async def one(conn: psycopg.AsyncConnection[Any], statement: str) -> Any:
    row = await (await conn.execute(statement.encode())).fetchone()
    assert row is not None
    return row[0]


async def test_a_stop_mid_catch_up_leaves_consistent_checkpoints_and_no_open_transaction(
    databases: Databases,
) -> None:
    url = databases.create()
    seed_messages(url, MESSAGES, processed=0.5, media=0.1)
    runner = ProjectionRunner(url, projectors(), batch_size=500)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        running = asyncio.create_task(runner.run())
        deadline = time.monotonic() + 30
        while await one(conn, "SELECT count(*) FROM sms_messages") == 0:
            assert time.monotonic() < deadline, "the projectors never started"
            await asyncio.sleep(0.005)

        runner.stop()
        await asyncio.wait_for(running, 10)  # no hang: the batches in flight end

        # Stopped mid-way, not after the end: there is more to fold.
        folded = await one(conn, "SELECT count(*) FROM sms_messages")
        assert 0 < folded < MESSAGES
        # The model holds exactly the messages at or below its checkpoint.
        assert folded == await one(
            conn,
            "SELECT count(*) FROM events e, projection_checkpoints c"
            " WHERE c.name = 'sms_messages' AND e.type = 'SmsReceived'"
            " AND (e.tx_id, e.position) <= (c.tx_id, c.position)",
        )
        # Nothing left holding a lease or a transaction open. (A session the
        # runner has closed may linger a moment, idle, while its backend exits;
        # and autovacuum may be at work on the freshly seeded tables: only
        # client sessions count.)
        busy = await (
            await conn.execute(
                "SELECT backend_type, state, xact_start IS NOT NULL, left(query, 200)"
                " FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                " AND (state <> 'idle' OR xact_start IS NOT NULL)"
            )
        ).fetchall()
        assert busy == []
        async with conn.transaction():
            free = await one(
                conn,
                "SELECT count(*) FROM (SELECT name FROM projection_checkpoints"
                " FOR UPDATE SKIP LOCKED) AS leases",
            )
        assert free == len(projectors())

        # A later run carries on from the checkpoints to the model a replay builds.
        while sum([await catch_up(conn, projector) for projector in projectors()]):
            pass  # the processing stage's events are folded on the next round
        assert await one(conn, "SELECT count(*) FROM sms_messages") == MESSAGES
        carried_on = await snapshot(conn)
        await replay(conn, MessagesProjector())
        assert await snapshot(conn) == carried_on


async def snapshot(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    return await (await conn.execute("SELECT * FROM sms_messages ORDER BY id")).fetchall()


class Pools(AsyncConnectionPool[Any]):
    """The projections pool, kept where the test can read its statistics."""

    made: ClassVar[list[AsyncConnectionPool[Any]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        Pools.made.append(self)


async def test_a_stop_while_the_database_is_away_ends_at_once(
    cluster_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = OwnServer(cluster_path)
    try:
        ensure_database(own.admin_url, "smsq")
        url = own.url("smsq")
        migrate(url)
        monkeypatch.setattr(runner_module, "AsyncConnectionPool", Pools)
        runner = ProjectionRunner(url, [MessagesProjector()], poll_interval=0.05)
        running = asyncio.create_task(runner.run())
        deadline = time.monotonic() + 30
        while not Pools.made or Pools.made[-1].get_stats().get("pool_size", 0) == 0:
            assert time.monotonic() < deadline, "the runner never connected"
            await asyncio.sleep(0.02)
        pool = Pools.made[-1]

        own.stop()
        # Held here: the projector waits for the pool to have a connection again.
        while pool.get_stats().get("requests_waiting", 0) == 0:
            assert time.monotonic() < deadline, "the projector never asked for a connection"
            await asyncio.sleep(0.02)
        runner.stop()
        stopped = time.monotonic()
        await asyncio.wait_for(running, 60)
        # Not the pool's 30 s wait for a connection: a stop is seen within a second.
        assert time.monotonic() - stopped < 2
    finally:
        own.close()
