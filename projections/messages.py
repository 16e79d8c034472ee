"""The `sms_messages` read model: its fold and the queries it serves.

The fold is one set-based statement over a range of the log, used both by
the live projector (a batch at a time) and by replay (large chunks into a
shadow table), so both build the same table by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from psycopg import sql

from projections.log import IN_RANGE, Checkpoint, range_params

TABLE = "sms_messages"

# One row per message touched by the range: a single grouping pass, with no
# join whose cost would hang on the planner guessing the range's size.
_FOLD = """
WITH batch AS (
    SELECT (data->>'message_id')::uuid AS id,
           (array_agg(data) FILTER (WHERE type = 'SmsReceived'))[1] AS r,
           (array_agg(data ORDER BY position DESC) FILTER (WHERE type = 'SmsProcessed'))[1] AS p,
           (count(*) FILTER (WHERE type = 'MediaAttached'))::int AS n
    FROM events
    WHERE {in_range} AND type IN ('SmsReceived', 'SmsProcessed', 'MediaAttached')
    GROUP BY 1
),
inserted AS (
    INSERT INTO {table} (id, "from", "to", message, received_at, status, media_count,
                         processed_at, encoding, segments, from_region, to_region)
    SELECT id, r->>'from', r->>'to', r->>'message', (r->>'received_at')::timestamptz,
           CASE WHEN p IS NULL THEN 'stored' ELSE 'processed' END::sms_status, n,
           (p->>'processed_at')::timestamptz, p->>'encoding', (p->>'segments')::smallint,
           p->>'from_region', p->>'to_region'
    FROM batch WHERE r IS NOT NULL
    ON CONFLICT (id) DO NOTHING
)
-- Messages whose SmsReceived was folded by an earlier range. (The rows inserted
-- just above are not visible to this statement, and carry their range already.)
UPDATE {table} AS t SET
    status = CASE WHEN b.p IS NULL THEN t.status ELSE 'processed' END,
    processed_at = coalesce((b.p->>'processed_at')::timestamptz, t.processed_at),
    encoding = coalesce(b.p->>'encoding', t.encoding),
    segments = coalesce((b.p->>'segments')::smallint, t.segments),
    from_region = coalesce(b.p->>'from_region', t.from_region),
    to_region = coalesce(b.p->>'to_region', t.to_region),
    media_count = t.media_count + b.n
FROM batch AS b
WHERE b.r IS NULL AND t.id = b.id
"""


async def fold_range(
    conn: psycopg.AsyncConnection[Any], table: str, lo: Checkpoint, hi: Checkpoint
) -> None:
    statement = sql.SQL(_FOLD).format(table=sql.Identifier(table), in_range=sql.SQL(IN_RANGE))
    await conn.execute(statement, range_params(lo, hi))


class MessagesProjector:
    name = TABLE
    tables = (TABLE,)

    async def apply(
        self, conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint
    ) -> None:
        await fold_range(conn, TABLE, lo, hi)

    async def rebuild(
        self,
        conn: psycopg.AsyncConnection[Any],
        tables: Mapping[str, str],
        lo: Checkpoint,
        hi: Checkpoint,
    ) -> None:
        await fold_range(conn, tables[TABLE], lo, hi)


class MessageRow(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    sender: str
    recipient: str
    message: str
    status: str
    received_at: datetime
    media_count: int
    processed_at: datetime | None
    encoding: str | None
    segments: int | None


_COLUMNS = sql.SQL(
    'm.id, m."from", m."to", m.message, m.status::text, m.received_at, m.media_count,'
    " m.processed_at, m.encoding, m.segments"
)


def _row(values: tuple[Any, ...]) -> MessageRow:
    fields = (
        "id",
        "sender",
        "recipient",
        "message",
        "status",
        "received_at",
        "media_count",
        "processed_at",
        "encoding",
        "segments",
    )
    return MessageRow(**dict(zip(fields, values, strict=True)))


async def get_message(conn: psycopg.AsyncConnection[Any], message_id: UUID) -> MessageRow | None:
    cur = await conn.execute(
        sql.SQL("SELECT {} FROM sms_messages AS m WHERE m.id = %s").format(_COLUMNS), (message_id,)
    )
    row = await cur.fetchone()
    return None if row is None else _row(row)


def list_statement(
    *,
    sender: str | None = None,
    recipient: str | None = None,
    status: str | None = None,
    limit: int = 10,
    offset: int = 0,
) -> tuple[sql.Composed, tuple[Any, ...]]:
    """Newest first; ties by id. Only the filters given appear in the SQL, so
    the planner picks the matching index, which already holds the sort order.

    The page's ids are found first (skipping `offset` index entries costs
    little), then only those rows are fetched.
    """
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (("from", sender), ("to", recipient), ("status", status)):
        if value is not None:
            conditions.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    statement = sql.SQL(
        "SELECT {columns} FROM sms_messages AS m JOIN ("
        " SELECT id, received_at FROM sms_messages{where}"
        " ORDER BY received_at DESC, id DESC LIMIT %s OFFSET %s"
        ") AS page USING (id) ORDER BY page.received_at DESC, m.id DESC"
    ).format(columns=_COLUMNS, where=where)
    return statement, (*params, limit, offset)


async def list_messages(
    conn: psycopg.AsyncConnection[Any],
    *,
    sender: str | None = None,
    recipient: str | None = None,
    status: str | None = None,
    limit: int = 10,
    offset: int = 0,
) -> list[MessageRow]:
    statement, params = list_statement(
        sender=sender, recipient=recipient, status=status, limit=limit, offset=offset
    )
    cur = await conn.execute(statement, params)
    return [_row(row) for row in await cur.fetchall()]
