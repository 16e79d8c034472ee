"""Readiness: probed in the background, about once a second, and `/readyz`
answers from the last probe, since a public route that ran a query per request
would let anyone load the database. What went wrong is logged, not answered:
the answer names no internals.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import psycopg
from psycopg_pool import AsyncConnectionPool

from migrations import available
from projections.log import rfc3339

PROBE_EVERY = 1.0

log = logging.getLogger(__name__)


class Stall(msgspec.Struct):
    projector: str
    position: int | None
    since: str


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    stalled: list[Stall] = msgspec.field(default_factory=list)


class NotReady(msgspec.Struct, frozen=True):
    detail: str


NOT_CHECKED = NotReady("readiness not checked yet")


class Readiness:
    """The last answer of a probe of the database, and the loop that renews it."""

    def __init__(self, pool: AsyncConnectionPool[Any], timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self.last: Health | NotReady = NOT_CHECKED

    async def probe(self) -> None:
        self.last = await self._check()

    async def keep_probing(self) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY)
            await self.probe()

    async def _check(self) -> Health | NotReady:
        expected = {m.name for m in available()}
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                cur = await conn.execute("SELECT name FROM schema_migrations")
                applied = {row[0] for row in await cur.fetchall()}
                missing = sorted(expected - applied)
                stalls = [] if missing else await _stalls(conn)
        except Exception as error:  # any failure to answer means not ready
            self._report(f"the database does not answer: {error}")
            return NotReady("the database does not answer")
        if missing:
            self._report(f"migrations not applied: {', '.join(missing)}")
            return NotReady("the database schema is not the one this service needs")
        if stalls:
            # Still ready: messages are accepted and answered; the read models
            # (or the seals) stay behind until the stalled projector is fixed.
            return Health("degraded", stalls)
        return Health("ready")

    def _report(self, why: str) -> None:
        if not isinstance(self.last, NotReady) or self.last is NOT_CHECKED:
            log.warning("not ready: %s", why)


async def _stalls(conn: psycopg.AsyncConnection[Any]) -> list[Stall]:
    cur = await conn.execute(
        "SELECT name, stalled_position, stalled_at FROM projection_checkpoints"
        " WHERE stalled_at IS NOT NULL ORDER BY name"
    )
    return [Stall(r[0], r[1], rfc3339(r[2])) for r in await cur.fetchall()]
