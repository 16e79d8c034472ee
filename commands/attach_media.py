"""AttachMedia: link images, whose bytes are already safe in the store, to a message.

Decided by the message's decider through the one command handler; the
`media_blobs` rows go in the same transaction as the `MediaAttached` events,
so an image's URL answers as soon as the 201 is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import psycopg

from commands.handler import Handled, Intent, handle
from domain.commands import AttachMedia, MessageCommand
from domain.events import EventMetadata, MediaAttached, MessageEvent, stream_of
from domain.message import MessageState, message_decider

# One row per sha256 however many messages share the bytes. Rows go in hash
# order, so two uploads inserting overlapping sets wait on each other in the
# same order and never deadlock. The bytes of the rows new to the table are
# added to the store's usage; the usage row is locked only when there are some.
_BLOBS = """
WITH added AS (
    INSERT INTO media_blobs (sha256, content_type, format, size, width, height)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::int[], %s::int[])
    ORDER BY 1
    ON CONFLICT (sha256) DO NOTHING
    RETURNING size
)
UPDATE media_usage SET bytes = bytes + (SELECT sum(size) FROM added)
WHERE EXISTS (SELECT FROM added)
"""

# What the store holds, and how many of the given images' bytes it holds already.
_USAGE = """
SELECT (SELECT bytes FROM media_usage),
       (SELECT coalesce(sum(size), 0) FROM media_blobs WHERE sha256 = ANY(%s))
"""


class Usage(NamedTuple):
    stored: int
    """Bytes of every image in the store."""
    known: int
    """Bytes of the images asked about that are among them."""


async def media_usage(conn: psycopg.AsyncConnection[Any], sha256s: Sequence[str] = ()) -> Usage:
    cur = await conn.execute(_USAGE, (list(sha256s),))
    row = await cur.fetchone()
    assert row is not None
    return Usage(int(row[0]), int(row[1]))


async def attach_media(
    conn: psycopg.AsyncConnection[Any], command: AttachMedia, metadata: EventMetadata
) -> Handled[MessageState | None, MessageEvent]:
    """`conn` must be in autocommit mode (each attempt commits)."""
    intent: Intent[MessageCommand] = Intent(stream_of(command.message_id), command, metadata)
    return await handle(conn, message_decider, intent, before_append=_record_blobs)


async def _record_blobs(conn: psycopg.AsyncConnection[Any], events: Sequence[MessageEvent]) -> None:
    attached = [e for e in events if isinstance(e, MediaAttached)]
    await conn.execute(
        _BLOBS,
        (
            [e.sha256 for e in attached],
            [e.content_type for e in attached],
            [e.format for e in attached],
            [e.size for e in attached],
            [e.width for e in attached],
            [e.height for e in attached],
        ),
    )
