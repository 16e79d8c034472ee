"""Tell projectors that the log grew, after the commit and off the request path.

NOTIFY inside a writing transaction takes a cluster-wide lock at commit and
serialises every writer behind it; sent afterwards, from its own connection,
it costs the writers nothing. Pokes that arrive while one is being sent are
coalesced into one more, sent a short `gap` later: a busy write path commits
hundreds of times a second, and projectors, which linger between batches
anyway, need to hear of it a few times, not hundreds. A lost notification
costs only latency: projectors also poll.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

CHANNEL = "smsq_events"

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, pool: AsyncConnectionPool[Any], gap: float = 0.005) -> None:
        self._pool = pool
        self._gap = gap
        self._again = False
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while True:
            self._again = False
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(f"NOTIFY {CHANNEL}")
            except (psycopg.Error, OSError) as error:
                log.debug("notify failed (projectors will poll): %s", error)
                return
            if not self._again:
                return
            await asyncio.sleep(self._gap)

    async def close(self) -> None:
        if self._task is not None:
            await self._task
