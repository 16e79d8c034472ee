"""The log, live: one reader per process, shared by every client that follows it.

The reader goes in the log's reading order (projections/log.py), below the
horizon, so an event whose transaction commits late is delivered in its place,
never skipped. It holds one connection and wakes on the process's listener
(or a poll, if a notification is lost). Each follower has a bounded queue: one
that falls too far behind is dropped (told so by its `lagged` flag) rather than
buffered without bound. A follower that starts in the past catches up with
paged reads, on the same connection, then takes the live events after the last
one it has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

import psycopg

from commands.event_store import Place, RecordedEvent
from commands.notify import CHANNEL
from projections.listener import Listener
from projections.log import read_after

log = logging.getLogger(__name__)

PAGE = 500

# The newest committed event below the horizon: where the live reader starts.
_END = """
SELECT position FROM events
WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id DESC, position DESC
LIMIT 1
"""


class Lagged(Exception):
    """The follower fell further behind than its queue holds."""


class Follower:
    def __init__(self, room: int) -> None:
        self.queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(room)
        self.lagged = False

    def offer(self, event: RecordedEvent) -> bool:
        """False once the follower has fallen too far behind (it is then dropped)."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lagged = True
            return False
        return True


class LogFeed:
    def __init__(
        self,
        url: str,
        listener: Listener,
        *,
        room: int = 1_000,
        poll: float = 1.0,
    ) -> None:
        self._url = url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._connected = asyncio.Event()
        self._turn = asyncio.Lock()
        self._room = room
        self._poll = poll
        self._followers: set[Follower] = set()
        self._wake = asyncio.Event()
        self._started = asyncio.Event()
        self._reading: asyncio.Task[None] | None = None
        self.tail = 0
        """The position of the last event the reader has handed out."""
        listener.subscribe(CHANNEL, lambda _: self._wake.set())
        listener.on_connect(self._wake.set)

    @property
    def followers(self) -> int:
        return len(self._followers)

    def _ensure_running(self) -> None:
        # Started by the first follower: a process nobody follows holds no connection.
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading

    async def _run(self) -> None:
        """Read the log as it grows, until cancelled; reconnects after a failure."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, fallback_application_name="smsq-feed"
                ) as conn:
                    if not self._started.is_set():
                        cur = await conn.execute(_END)
                        row = await cur.fetchone()
                        self.tail = 0 if row is None else row[0]
                        self._started.set()
                    self._conn = conn
                    self._connected.set()
                    await self._follow()
            except (psycopg.Error, OSError) as error:
                log.warning("live feed reader: %s; reconnecting", error)
            finally:
                self._connected.clear()
                self._conn = None
            await asyncio.sleep(self._poll)

    async def _read(self, after: int) -> list[RecordedEvent]:
        """A page after position `after`, on the one connection, one reader at a time."""
        async with self._turn:
            return await read_after(await self._connection(), after, PAGE)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        await self._connected.wait()
        if self._conn is None:
            raise psycopg.OperationalError("the live feed's connection is being made again")
        return self._conn

    async def _follow(self) -> None:
        while True:
            self._wake.clear()
            page = await self._read(self.tail)
            for event in page:
                self._hand_out(event)
            if page:
                self.tail = page[-1].position
            if len(page) == PAGE:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    def _hand_out(self, event: RecordedEvent) -> None:
        for follower in list(self._followers):
            if not follower.offer(event):
                self._followers.discard(follower)

    async def follow(
        self, after: int, event_type: str | None = None, *, quiet: float = 15.0
    ) -> AsyncGenerator[list[RecordedEvent] | None, None]:
        """Every committed event after position `after` (as `GET /events` reads it),
        in reading order, then each new one as it commits; None after each `quiet`
        seconds without one. Raises `Lagged` once the caller has fallen too far
        behind.

        Events come in lists: whatever is waiting, all at once. One event at a
        time would cost the caller a few turns of the event loop each, and on a
        busy loop that, not the CPU, would bound how fast a follower keeps up."""
        self._ensure_running()
        await self._started.wait()
        follower = Follower(self._room)
        # From here on the reader hands this follower whatever it reads; what came
        # before is read here, page by page, until a short page: the horizon,
        # which is at or past where the reader was.
        self._followers.add(follower)
        try:
            async with self._turn:
                last = await place_of(await self._connection(), after)
            while True:
                page = await self._read(after)
                if page:
                    last = page[-1].place
                    if chosen := [e for e in page if event_type in (None, e.type)]:
                        yield chosen
                if len(page) < PAGE:
                    break
                after = page[-1].position
            while True:
                if follower.lagged and follower.queue.empty():
                    raise Lagged(f"more than {self._room} events behind")
                try:
                    waiting = [follower.queue.get_nowait()]
                except asyncio.QueueEmpty:
                    try:
                        waiting = [await asyncio.wait_for(follower.queue.get(), quiet)]
                    except TimeoutError:
                        yield None
                        continue
                while not follower.queue.empty():
                    waiting.append(follower.queue.get_nowait())
                # Those read already, while catching up, are left out.
                fresh = [e for e in waiting if e.place > last]
                if fresh:
                    last = fresh[-1].place
                    if chosen := [e for e in fresh if event_type in (None, e.type)]:
                        yield chosen
        finally:
            self._followers.discard(follower)


_PLACE = """
SELECT tx_id::text, position FROM events WHERE position <= %s ORDER BY position DESC LIMIT 1
"""


async def place_of(conn: psycopg.AsyncConnection[Any], position: int) -> Place:
    """The place in reading order that `after=position` names (see projections.log)."""
    cur = await conn.execute(_PLACE, (position,))
    row = await cur.fetchone()
    return Place(0, 0) if row is None else Place(int(row[0]), row[1])
