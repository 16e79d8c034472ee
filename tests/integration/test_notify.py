"""Projectors hear of commits at once when the write path is quiet, and a few
times, not once per commit, when it is busy."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg_pool import AsyncConnectionPool

from commands.notify import CHANNEL, Notifier


async def notifications(database_url: str, pokes: int, gap: float) -> tuple[int, float]:
    """Poke once, then `pokes - 1` times while that is sent; return how many
    NOTIFYs arrived and how long sending them took."""
    listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    async with listener, AsyncConnectionPool(database_url, min_size=1, max_size=2) as pool:
        await listener.execute(f"LISTEN {CHANNEL}")
        notifier = Notifier(pool, gap=gap)
        loop = asyncio.get_running_loop()
        started = loop.time()
        notifier.poke()
        await asyncio.sleep(0)  # the first NOTIFY is on its way
        for _ in range(pokes - 1):
            notifier.poke()
        await notifier.close()
        took = loop.time() - started
        await listener.execute("SELECT 1")  # a round trip, so what was sent has arrived
        arrived = [n async for n in listener.notifies(timeout=0.2)]
        return len(arrived), took


async def test_a_lone_commit_is_announced_once(database_url: str) -> None:
    count, _ = await notifications(database_url, pokes=1, gap=10.0)
    assert count == 1


async def test_a_burst_of_commits_is_announced_twice_not_once_each(database_url: str) -> None:
    # The first poke is sent at once; the other 199, arriving while it is on
    # its way, make one more, a gap later, so the last commit is not missed.
    count, took = await notifications(database_url, pokes=200, gap=0.05)
    assert count == 2
    assert took >= 0.05
