"""Waiting for a read model to pass a place: woken by the projectors' announcements."""

from __future__ import annotations

import asyncio
import time

import pytest
from psycopg_pool import AsyncConnectionPool

from commands.event_store import Place
from projections.listener import Listener, listening
from projections.progress import PROGRESS, Progress, UnknownPlace, announcement
from tests.support.streams import a_message


async def a_place(pool: AsyncConnectionPool) -> Place:
    async with pool.connection() as conn:
        message_id = await a_message(conn)
        cur = await conn.execute(
            "SELECT tx_id::text, position FROM events WHERE stream_id = %s",
            (f"sms-{message_id}",),
        )
        row = await cur.fetchone()
    assert row is not None
    return Place(int(row[0]), row[1])


async def test_a_waiter_wakes_on_the_announcement_not_at_its_deadline(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    place = await a_place(pool)
    listener = Listener(database_url)
    progress = Progress(pool, listener)
    # A name with no checkpoint row: only an announcement can move it.
    name = "a model of this test"
    async with listening(listener):
        started = time.monotonic()
        waiting = asyncio.create_task(progress.wait(name, place, 30))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        async with pool.connection() as conn:
            # As a projector announces a batch: sent in a transaction, heard at commit.
            await conn.execute("SELECT pg_notify(%s, %s)", (PROGRESS, announcement(name, place)))
        assert await asyncio.wait_for(waiting, 10)
        assert time.monotonic() - started < 10
        assert progress.passed(name, place)


async def test_a_place_not_passed_in_time_is_reported_as_such(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    place = await a_place(pool)
    progress = Progress(pool, Listener(database_url))
    progress.heard(announcement("behind", Place(place.tx_id, place.position - 1)))
    assert not await progress.wait("behind", place, 0.2)
    progress.heard(announcement("behind", place))
    assert await progress.wait("behind", place, 0.2)


async def test_a_place_no_event_holds_is_refused_at_once(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    place = await a_place(pool)
    progress = Progress(pool, Listener(database_url))
    with pytest.raises(UnknownPlace):
        await progress.wait("anything", Place(place.tx_id, place.position + 10**9), 30)
    with pytest.raises(UnknownPlace):
        await progress.wait_for_horizon(Place(place.tx_id + 10**9, place.position), 30)
