"""Reading the log without skipping.

A position is taken when an event is inserted but becomes visible only when
its transaction commits, so "everything after position N" can miss an event
that commits late. Readers therefore go in (tx_id, position) order and stop
below the oldest transaction still in flight; the horizon test and the read
are one statement, because the snapshot belongs to the statement.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self
from uuid import UUID

import msgspec
import psycopg

from commands.event_store import Place, RecordedEvent, recorded_columns, recorded_event

# A projector's checkpoint is the place of the last event it folded.
Checkpoint = Place

START = Checkpoint(0, 0)

IN_RANGE = """
(tx_id, position) > (%(lo_tx)s::text::xid8, %(lo_pos)s)
AND (tx_id, position) <= (%(hi_tx)s::text::xid8, %(hi_pos)s)
"""


def range_end(after: str) -> str:
    """SQL for the end of the next `%(limit)s` committed events after the pair
    `after`, and their count: the horizon test and the read in one statement.

    The outer ORDER BY names the subquery's columns: ordering by an output
    column `tx_id::text` would sort ids as text ('999' after '1000'), which
    ended ranges early and miscounted them.
    """
    return f"""
    SELECT batch.tx_id, batch.position, count(*) OVER () AS n
    FROM (
        SELECT tx_id, position FROM events
        WHERE (tx_id, position) > ({after})
          AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY tx_id, position
        LIMIT %(limit)s
    ) AS batch
    ORDER BY batch.tx_id DESC, batch.position DESC
    LIMIT 1
    """


_NEXT = f"""
SELECT ahead.tx_id::text, ahead.position, ahead.n
FROM ({range_end("%(lo_tx)s::text::xid8, %(lo_pos)s")}) AS ahead
"""


def range_params(lo: Checkpoint, hi: Checkpoint) -> dict[str, int]:
    return {"lo_tx": lo.tx_id, "lo_pos": lo.position, "hi_tx": hi.tx_id, "hi_pos": hi.position}


async def next_range(
    conn: psycopg.AsyncConnection[Any], after: Checkpoint, limit: int
) -> tuple[Checkpoint, int] | None:
    """The end of the next `limit` committed events after `after`, and their count."""
    cur = await conn.execute(
        _NEXT, {"lo_tx": after.tx_id, "lo_pos": after.position, "limit": limit}
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Checkpoint(int(row[0]), row[1]), row[2]


async def read_range(
    conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint, types: tuple[str, ...] = ()
) -> list[RecordedEvent]:
    """The events in (lo, hi], in reading order; `hi` must come from `next_range`."""
    where = IN_RANGE + (" AND type = ANY(%(types)s)" if types else "")
    cur = await conn.execute(
        f"SELECT {recorded_columns} FROM events WHERE {where} ORDER BY tx_id, position",
        {**range_params(lo, hi), "types": list(types)},
    )
    return [recorded_event(row) for row in await cur.fetchall()]


# `after` is a position, but the reading order is (tx_id, position): the place
# it names is that of the event at this position (or, when no event has it,
# of the nearest one below). Events of transactions that took their ids before
# that event's come earlier in this order and are not "after" it, so a reader
# who starts at 0 and always passes back the last position it was given sees
# every event exactly once, even those whose transactions commit late.
_AUDIT = """
WITH place AS MATERIALIZED (
    SELECT coalesce(p.tx_id, '0'::xid8) AS at_tx, coalesce(p.position, 0) AS at_position
    FROM (VALUES (1)) AS one
    LEFT JOIN LATERAL (
        SELECT tx_id, position FROM events WHERE position <= %(after)s
        ORDER BY position DESC LIMIT 1
    ) AS p ON true
)
SELECT {columns} FROM events
-- Scalar subqueries, not a join: the planner then treats the place as a
-- constant and starts the index scan there instead of filtering up to it.
WHERE (tx_id, position) > ((SELECT at_tx FROM place), (SELECT at_position FROM place))
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
  {filters}
ORDER BY tx_id, position
LIMIT %(limit)s
"""


def audit_statement(
    after: int, limit: int, *, event_type: str | None = None, stream_id: str | None = None
) -> tuple[str, dict[str, Any]]:
    filters = ""
    if event_type is not None:
        filters += " AND type = %(type)s"
    if stream_id is not None:
        filters += " AND stream_id = %(stream)s"
    return _AUDIT.format(columns=recorded_columns, filters=filters), {
        "after": after,
        "limit": limit,
        "type": event_type,
        "stream": stream_id,
    }


async def read_after(
    conn: psycopg.AsyncConnection[Any],
    after: int,
    limit: int,
    *,
    event_type: str | None = None,
    stream_id: str | None = None,
) -> list[RecordedEvent]:
    """Up to `limit` committed events after position `after`, in reading order.

    The place, the horizon and the read are one statement (one snapshot).
    """
    statement, params = audit_statement(after, limit, event_type=event_type, stream_id=stream_id)
    cur = await conn.execute(statement, params)
    return [recorded_event(row) for row in await cur.fetchall()]


class LogEntry(msgspec.Struct, kw_only=True):
    """An event as auditors read it (GET /events, `smsq events`): as the log
    stores it, `data` in the `schema_version` it was written in, never upcast."""

    position: int
    stream_id: str
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: str
    event_id: UUID
    schema_version: int
    hash: str

    @classmethod
    def recorded(cls, event: RecordedEvent) -> Self:
        return cls(
            position=event.position,
            stream_id=event.stream_id,
            version=event.version,
            type=event.type,
            data=msgspec.json.decode(event.data),
            metadata=msgspec.json.decode(event.metadata),
            recorded_at=rfc3339(event.recorded_at),
            event_id=event.event_id,
            schema_version=event.schema_version,
            hash=event.hash,
        )


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: `2026-11-24T10:15:02.123Z`."""
    if moment.tzinfo is not UTC:  # the pool's sessions read times in UTC already
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"
