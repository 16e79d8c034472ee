"""The live feed hands a follower whatever is waiting at once, not one event a turn."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import msgspec
import psycopg
from uuid_utils.compat import uuid7

from domain.events import EventMetadata, SmsReceived, stream_of
from projections.feed import LogFeed
from projections.listener import Listener, listening
from tests.support.phones import random_phone

BATCH = 50
META = msgspec.json.encode(EventMetadata(correlation_id=uuid7(), causation_id=uuid7())).decode()


async def insert(conn: psycopg.AsyncConnection) -> None:
    received = SmsReceived(
        message_id=uuid7(),
        from_=random_phone(),
        to="+447911123456",
        message="together",
        received_at=datetime.now(UTC),
    )
    await conn.execute(
        "INSERT INTO events (stream_id, version, event_id, type, data, metadata)"
        " VALUES (%s, 1, %s, %s, %s, %s)",
        (
            stream_of(received.message_id),
            received.message_id,
            received.TYPE,
            msgspec.json.encode(received).decode(),
            META,
        ),
    )


async def test_events_committed_together_reach_a_follower_in_one_list(database_url: str) -> None:
    listener = Listener(database_url)
    feed = LogFeed(database_url, listener)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT coalesce(max(position), 0) FROM events")
        row = await cur.fetchone()
        assert row is not None
        await conn.commit()
        async with listening(listener):
            events = feed.follow(row[0], quiet=30)
            async with contextlib.aclosing(events):
                # The follower waits for live events before any is written.
                first = asyncio.ensure_future(anext(events))
                deadline = time.monotonic() + 10
                while feed.followers == 0:
                    assert time.monotonic() < deadline, "the follower never started"
                    await asyncio.sleep(0.01)
                for _ in range(BATCH):
                    await insert(conn)
                await conn.commit()
                batch = await asyncio.wait_for(first, 30)
        await feed.aclose()
    assert batch is not None
    assert len(batch) == BATCH
    assert [e.position for e in batch] == sorted(e.position for e in batch)
