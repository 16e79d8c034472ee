"""The event store: append with an expected version, read a stream.

Appends are plain INSERTs into `events`; the unique constraints do the
concurrency control, and each violation is mapped by its constraint name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from psycopg import errors
from uuid_utils.compat import uuid7

from domain import upcasting
from domain.access import AccessEvent
from domain.events import AnyEvent, Event, EventMetadata


class ConcurrencyConflict(Exception):
    """The stream is not at the version the command was decided on; decide again."""

    def __init__(self, stream_id: str, expected_version: int) -> None:
        super().__init__(f"stream {stream_id} is not at version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


class DuplicateEvent(Exception):
    """An event with this id is already in the log."""


class Append(msgspec.Struct, frozen=True):
    """Events for one stream, to be written after `expected_version` (0: a new stream).

    `event_ids`, when given, make the append idempotent: a retry that carries the
    same ids is refused as a `DuplicateEvent` instead of writing twice.
    """

    stream_id: str
    expected_version: int
    events: Sequence[AnyEvent]
    metadata: EventMetadata
    event_ids: Sequence[UUID] = ()


class Place(msgspec.Struct, frozen=True, order=True):
    """A place in the log's reading order: the event at (tx_id, position).

    Readers go in this order, not by position alone: a position is taken at
    insert time but becomes visible only when its transaction commits.
    """

    tx_id: int
    position: int


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the log stores it: `data` in the `schema_version` it was
    written in. `decode` reads it as the current version; audit reads show it
    as stored."""

    position: int
    tx_id: int
    stream_id: str
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: msgspec.Raw
    metadata: msgspec.Raw
    recorded_at: datetime
    hash: str
    """Hex SHA-256 chaining the event to the one before it in its stream (docs/audit.md)."""

    @property
    def place(self) -> Place:
        return Place(self.tx_id, self.position)

    def decode(self) -> Event:
        """The current version's struct, whatever version was stored; raises
        `UnknownEventVersion` for one this code cannot read, and ValueError for
        an event that is not a message's."""
        event = self.decode_any()
        if isinstance(event, AccessEvent):
            raise ValueError(f"{self.type} at position {self.position} is not a message's event")
        return event

    def decode_any(self) -> AnyEvent:
        """As `decode`, for a stream that may not be a message's (the `access` stream)."""
        return upcasting.decode(self.type, self.schema_version, self.data)


# One JSON document for the whole append, encoded by msgspec in one call: far
# cheaper for the client than dumping eight parallel arrays element by element.
# `{gate}` is empty here; a statement that must check something first, under a
# lock, before any event goes in puts a one-row CTE of its own there
# (commands/receive_sms.py).
INSERT_EVENTS = """
INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata)
SELECT e.stream_id, e.version, e.event_id, e.type, e.schema_version, e.data, e.metadata
FROM {gate}jsonb_to_recordset(%s::jsonb)
     AS e(stream_id text, expected int, version int, event_id uuid, type text,
          schema_version int2, data jsonb, metadata jsonb)
-- A stream behind the expected version would otherwise get a gap in its versions.
-- OFFSET 0 keeps the check a probe of the stream's index for each row: without
-- it the planner may instead hash the whole log once per statement, a plan it
-- picks while the log is small and keeps in the prepared statement as it grows.
WHERE e.expected = 0
   OR EXISTS (SELECT FROM events p WHERE p.stream_id = e.stream_id AND p.version = e.expected
              OFFSET 0)
RETURNING event_id, tx_id::text, position
"""
_INSERT = INSERT_EVENTS.format(gate="")


class _Row(msgspec.Struct, frozen=True):
    stream_id: str
    expected: int
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: AnyEvent
    metadata: EventMetadata


# tx_id as text (psycopg has no xid8 loader), under a name of its own: a
# statement that orders by tx_id must sort the xid8 column, not this text.
recorded_columns = (
    "position, tx_id::text AS tx_text, stream_id, version, event_id, type, schema_version,"
    " data::text, metadata::text, recorded_at, hash"
)


class Appended:
    """Where the appended events went in the log, one place per event in the
    order they were given.

    In pipeline mode an append that only starts new streams is not waited for
    (a conflict, a reused message id, then surfaces when the pipeline syncs):
    its places are read once the result has arrived, after the sync.
    """

    def __init__(self, cursor: psycopg.AsyncCursor[Any], event_ids: list[UUID]) -> None:
        self._cursor = cursor
        self._event_ids = event_ids
        self._rows: list[tuple[Any, ...]] | None = None

    async def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            self._rows = await self._cursor.fetchall()
        return self._rows

    async def places(self) -> list[Place]:
        return places_in(await self.rows(), self._event_ids)


def places_in(rows: Sequence[tuple[Any, ...]], event_ids: Sequence[UUID]) -> list[Place]:
    """The places of `INSERT_EVENTS`'s rows, in the order of `event_ids`."""
    at = {event_id: Place(int(tx), position) for event_id, tx, position in rows}
    return [at[event_id] for event_id in event_ids]


def encode_appends(appends: Sequence[Append]) -> tuple[str, list[UUID]]:
    """The document `INSERT_EVENTS` takes for these appends, and its events' ids in order."""
    rows = [
        _Row(
            a.stream_id,
            a.expected_version,
            a.expected_version + offset,
            event_id,
            event.TYPE,
            event.SCHEMA_VERSION,
            event,
            a.metadata,
        )
        for a in appends
        for offset, (event, event_id) in enumerate(
            zip(a.events, a.event_ids or [uuid7() for _ in a.events], strict=True), start=1
        )
    ]
    return msgspec.json.encode(rows).decode(), [row.event_id for row in rows]


async def append(conn: psycopg.AsyncConnection[Any], appends: Sequence[Append]) -> Appended:
    """Append every stream's events in one statement.

    Raises `ConcurrencyConflict` when a stream moved past (or is behind) its
    expected version; the caller's transaction is then aborted and may retry.
    """
    document, event_ids = encode_appends(appends)
    existing = [a for a in appends if a.expected_version > 0]
    try:
        cur = await conn.execute(_INSERT, (document,))
        appended = Appended(cur, event_ids)
        if existing:
            inserted = len(await appended.rows())
    except errors.UniqueViolation as error:
        raise conflict_of(error, appends) from error
    if existing and inserted != len(event_ids):
        raise ConcurrencyConflict(existing[0].stream_id, existing[0].expected_version)
    return appended


def conflict_of(error: errors.UniqueViolation, appends: Sequence[Append]) -> Exception:
    """What a unique violation during an append means: the events' own error, or `error`."""
    constraint = error.diag.constraint_name
    if constraint == "events_event_id_key":
        return DuplicateEvent(str(error.diag.message_detail))
    if constraint == "events_stream_version_key":
        detail = error.diag.message_detail or ""
        for a in appends:
            if a.stream_id in detail:
                return ConcurrencyConflict(a.stream_id, a.expected_version)
        return ConcurrencyConflict(appends[0].stream_id, appends[0].expected_version)
    return error


async def read_stream(conn: psycopg.AsyncConnection[Any], stream_id: str) -> list[RecordedEvent]:
    return (await read_streams(conn, [stream_id])).get(stream_id, [])


async def read_streams(
    conn: psycopg.AsyncConnection[Any], stream_ids: Sequence[str]
) -> dict[str, list[RecordedEvent]]:
    cur = await conn.execute(
        f"SELECT {recorded_columns} FROM events WHERE stream_id = ANY(%s)"
        " ORDER BY stream_id, version",
        (list(stream_ids),),
    )
    streams: dict[str, list[RecordedEvent]] = {}
    for row in await cur.fetchall():
        event = recorded_event(row)
        streams.setdefault(event.stream_id, []).append(event)
    return streams


# For statements that answer about one message from a read model or, when the
# model is behind, from the stream itself, in one snapshot and one round trip:
# a CTE named `stream` holding the stream's rows, the place of its last event
# in reading order, and the whole stream as one JSON document.
STREAM_CTE = """
stream AS MATERIALIZED (SELECT * FROM events WHERE stream_id = %(stream)s),
last AS (SELECT tx_id, position FROM stream ORDER BY tx_id DESC, position DESC LIMIT 1)
"""

STREAM_JSON = """
(SELECT json_agg(json_build_object(
    'position', position, 'tx_id', tx_id::text::bigint, 'stream_id', stream_id,
    'version', version, 'event_id', event_id, 'type', type, 'schema_version', schema_version,
    'data', data, 'metadata', metadata, 'recorded_at', recorded_at, 'hash', hash)
    ORDER BY version)
 FROM stream)::text
"""

_stream_decoder = msgspec.json.Decoder(list[RecordedEvent])


def decode_stream(document: str) -> list[RecordedEvent]:
    return _stream_decoder.decode(document)


def recorded_event(row: tuple[Any, ...]) -> RecordedEvent:
    (
        position,
        tx_id,
        stream_id,
        version,
        event_id,
        type_,
        schema_version,
        data,
        metadata,
        at,
        hash_,
    ) = row
    return RecordedEvent(
        position=position,
        tx_id=int(tx_id),
        stream_id=stream_id,
        version=version,
        event_id=event_id,
        type=type_,
        schema_version=schema_version,
        data=msgspec.Raw(data.encode()),
        metadata=msgspec.Raw(metadata.encode()),
        recorded_at=at,
        hash=hash_,
    )
