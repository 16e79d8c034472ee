"""One LISTEN connection per process, shared by everything that follows the log.

Projectors wake when the log grows; readers waiting on a consistency token
wake when a projector moves. Each would otherwise hold a connection of its
own just to hear a few notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


class Listener:
    def __init__(self, url: str, *, reconnect_after: float = 1.0) -> None:
        self._url = url
        self._reconnect_after = reconnect_after
        self._handlers: defaultdict[str, list[Callable[[str], None]]] = defaultdict(list)
        self._connected: list[Callable[[], None]] = []

    def subscribe(self, channel: str, handler: Callable[[str], None]) -> None:
        """Call `handler(payload)` for each notification on `channel`; subscribe before `run`."""
        self._handlers[channel].append(handler)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time the connection is (re)made: whatever was
        sent while it was down is lost, so a follower looks for itself."""
        self._connected.append(callback)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a failure."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, fallback_application_name="smsq-listener"
                )
                async with conn:
                    for channel in self._handlers:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    for callback in self._connected:
                        callback()
                    async for note in conn.notifies():
                        for handler in self._handlers.get(note.channel, ()):
                            try:
                                handler(note.payload)
                            except Exception:  # one bad message must not deafen the rest
                                log.exception("listener: %s could not take %r", handler, note)
            except (psycopg.Error, OSError) as error:
                log.warning("listener: %s; reconnecting", error)
                await asyncio.sleep(self._reconnect_after)


@contextlib.asynccontextmanager
async def listening(listener: Listener) -> AsyncIterator[None]:
    """Run `listener` for the duration (every subscription made before entering)."""
    task = asyncio.create_task(listener.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
