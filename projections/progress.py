"""How far each projector has folded, and readers waiting for a place in the log.

A projector announces each batch once it has committed (`PROGRESS`, sent
just after the commit, so it is never heard before the batch is visible). A
reader that carries a consistency token waits here until the read model it
reads has passed the token's place: woken by those announcements, never by a
timer of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from commands.event_store import Place
from projections.listener import Listener

log = logging.getLogger(__name__)

PROGRESS = "smsq_progress"

_CHECKPOINTS = "SELECT name, tx_id::text, position FROM projection_checkpoints"
# Every transaction below the horizon has ended: a reader of the log in its
# reading order (GET /events) sees every committed event before this place.
_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot()) > %s::text::xid8"


# A token names the place of an event its write recorded or found.
_EXISTS = "SELECT EXISTS (SELECT 1 FROM events WHERE position = %s AND tx_id = %s::text::xid8)"


class UnknownPlace(Exception):
    """No event is at this place: the token was not made by this service's log."""


def announcement(name: str, place: Place) -> str:
    return f"{name} {place.tx_id} {place.position}"


class Progress:
    def __init__(self, pool: AsyncConnectionPool[Any], listener: Listener) -> None:
        self._pool = pool
        self._known: dict[str, Place] = {}
        self._moved = asyncio.Event()
        self._refreshing: asyncio.Task[None] | None = None
        listener.subscribe(PROGRESS, self.heard)
        listener.on_connect(self._resync)

    def _resync(self) -> None:
        """Announcements made while the listener was away are lost: look instead."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except (psycopg.Error, PoolTimeout) as error:
            log.warning("could not read the checkpoints: %s", error)

    def heard(self, payload: str) -> None:
        """A projector's announcement (see `announcement`)."""
        name, tx_id, position = payload.rsplit(" ", 2)
        self._advance(name, Place(int(tx_id), int(position)))

    def _advance(self, name: str, place: Place) -> None:
        known = self._known.get(name)
        if known is None or place > known:
            self._known[name] = place
        # Everyone waiting looks again; a new event for the next ones.
        self._moved.set()
        self._moved = asyncio.Event()

    def passed(self, name: str, place: Place) -> bool:
        known = self._known.get(name)
        return known is not None and known >= place

    async def refresh(self) -> None:
        """Read every checkpoint: at start, and when announcements may have been lost."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(_CHECKPOINTS)
            for name, tx_id, position in await cur.fetchall():
                self._advance(name, Place(int(tx_id), position))

    async def wait(self, name: str, place: Place, within: float) -> bool:
        """Whether projector `name` passes `place` within `within` seconds."""

        async def passed() -> bool:
            return self.passed(name, place)

        return await self._until(place, passed, within)

    async def wait_for_horizon(self, place: Place, within: float) -> bool:
        """Whether every transaction up to `place`'s has ended within `within` seconds."""

        async def passed() -> bool:
            async with self._pool.connection() as conn:
                cur = await conn.execute(_HORIZON, (place.tx_id,))
                row = await cur.fetchone()
            return bool(row and row[0])

        return await self._until(place, passed, within)

    async def _until(
        self, place: Place, passed: Callable[[], Awaitable[bool]], within: float
    ) -> bool:
        """Raises `UnknownPlace` rather than wait for a place no event holds."""
        if await passed():
            return True
        # What this process heard may be behind (it heard nothing yet, or lost a
        # notification): one look at the checkpoints before waiting, and at the
        # place itself, which a made-up token would have the reader wait for in vain.
        await self.refresh()
        async with self._pool.connection() as conn:
            cur = await conn.execute(_EXISTS, (place.position, place.tx_id))
            row = await cur.fetchone()
        if not (row and row[0]):
            raise UnknownPlace(
                f"no event at position {place.position} of transaction {place.tx_id}"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not await passed():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), remaining)
        return True
