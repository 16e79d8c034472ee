"""The live feed hands a follower whatever is waiting at once, not one event a turn."""

from __future__ import annotations

import asyncio
import contextlib
import time

import psycopg

from projections.feed import LogFeed
from projections.listener import Listener, listening
from tests.support.streams import a_message

BATCH = 50


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
                    await a_message(conn)
                await conn.commit()
                batch = await asyncio.wait_for(first, 30)
        await feed.aclose()
    assert batch is not None
    assert len(batch) == BATCH
    assert [e.position for e in batch] == sorted(e.position for e in batch)
