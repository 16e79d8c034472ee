"""AttachMedia: link images, whose bytes are already safe in the store, to a message.

One transaction per attempt: the message's stream lock, its events and the
database clock, the pure decision, then `media_blobs` and the `MediaAttached`
events. The lock queues writers to one message behind each other; the
expected version still guards the append, and a conflict (a writer that did
not take the lock) is decided again.
"""

from __future__ import annotations

from typing import Any

import psycopg

from commands.event_store import (
    Append,
    ConcurrencyConflict,
    Recorded,
    append,
    lock_streams,
    read_stream,
)
from domain.commands import AttachMedia
from domain.events import EventMetadata, MediaAttached, stream_of
from domain.media import Attached, decide_attach
from domain.message import fold

ATTEMPTS = 5

_CLOCK = "SELECT clock_timestamp()"

# One row per sha256 however many messages share the bytes. Rows go in hash
# order, so two uploads inserting overlapping sets wait on each other in the
# same order and never deadlock.
_BLOBS = """
INSERT INTO media_blobs (sha256, content_type, size, width, height)
SELECT * FROM unnest(%s::text[], %s::text[], %s::int[], %s::int[], %s::int[]) ORDER BY 1
ON CONFLICT (sha256) DO NOTHING
"""


async def attach_media(
    conn: psycopg.AsyncConnection[Any], command: AttachMedia, metadata: EventMetadata
) -> Recorded[Attached]:
    """Raises `UnknownMessage`; `conn` must be in autocommit mode (each attempt commits)."""
    attempt = 1
    while True:
        try:
            return await _attempt(conn, command, metadata)
        except ConcurrencyConflict:
            if attempt >= ATTEMPTS:
                raise
            attempt += 1


async def _attempt(
    conn: psycopg.AsyncConnection[Any], command: AttachMedia, metadata: EventMetadata
) -> Recorded[Attached]:
    stream = stream_of(command.message_id)
    async with conn.transaction():
        await lock_streams(conn, [stream])
        recorded = await read_stream(conn, stream)
        cur = await conn.execute(_CLOCK)
        row = await cur.fetchone()
        assert row is not None
        state = fold(r.decode() for r in recorded)
        decision = decide_attach(command, state, row[0])
        if not decision.new:
            return Recorded(decision, max(r.place for r in recorded))
        assert state is not None
        await conn.execute(_BLOBS, _columns(decision.new))
        appended = await append(conn, [Append(stream, state.version, decision.new, metadata)])
    return Recorded(decision, max(await appended.places()))


def _columns(events: tuple[MediaAttached, ...]) -> tuple[list[Any], ...]:
    return (
        [e.sha256 for e in events],
        [e.content_type for e in events],
        [e.size for e in events],
        [e.width for e in events],
        [e.height for e in events],
    )
