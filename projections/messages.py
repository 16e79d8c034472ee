"""The `sms_messages` read model: its fold and the queries it serves."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from psycopg import sql

from commands.event_store import (
    STREAM_CTE,
    STREAM_JSON,
    Place,
    RecordedEvent,
    decode_stream,
)
from domain.events import MediaAttached, SmsProcessed, SmsReceived, stream_of
from projections.fold import SqlFold

TABLE = "sms_messages"

# One row per message touched by the range: a single grouping pass, with no
# join whose cost would hang on the planner guessing the range's size.
#
# Folding a range again (a retry, an overlapping range) must change nothing:
# each row keeps the place in the log (tx_id, position) of the last event
# folded into it, and only events beyond it count. A place, not the stream
# version: the processing stage holds its transaction id from the start of its
# batch, so its SmsProcessed can precede, in the reading order, an image
# attached meanwhile with a lower version, which a version mark would skip.
_FOLD = """
WITH batch AS (
    SELECT (data->>'message_id')::uuid AS id,
           (array_agg(data) FILTER (WHERE type = {received}))[1] AS r,
           (array_agg(data ORDER BY tx_id DESC, position DESC)
               FILTER (WHERE type = {processed}))[1] AS p,
           array_agg(tx_id ORDER BY tx_id DESC, position DESC)
               FILTER (WHERE type = {attached}) AS media_tx,
           array_agg(position ORDER BY tx_id DESC, position DESC)
               FILTER (WHERE type = {attached}) AS media_position,
           (array_agg(tx_id ORDER BY tx_id DESC, position DESC))[1] AS last_tx,
           (array_agg(position ORDER BY tx_id DESC, position DESC))[1] AS last_position
    -- The view's `data` named once (see projections.fold).
    FROM (SELECT type, data, tx_id, position FROM {events}
          WHERE {in_range} AND type IN ({received}, {processed}, {attached}) OFFSET 0) AS e
    GROUP BY 1
),
inserted AS (
    INSERT INTO {sms_messages} AS t (id, "from", "to", message, received_at, status, media_count,
                              processed_at, encoding, segments, from_region, to_region,
                              folded_tx_id, folded_position)
    SELECT id, r->>'from', r->>'to', r->>'message', (r->>'received_at')::timestamptz,
           CASE WHEN p IS NULL THEN 'stored' ELSE 'processed' END::sms_status,
           coalesce(cardinality(media_position), 0),
           (p->>'processed_at')::timestamptz, p->>'encoding', (p->>'segments')::smallint,
           p->>'from_region', p->>'to_region', last_tx, last_position
    FROM batch WHERE r IS NOT NULL
    -- SmsReceived comes first in its stream's reading order, so this range holds
    -- the stream from its start: its fold is the row, if it reaches further.
    ON CONFLICT (id) DO UPDATE SET
        (status, media_count, processed_at, encoding, segments, from_region, to_region,
         folded_tx_id, folded_position)
        = (excluded.status, excluded.media_count, excluded.processed_at, excluded.encoding,
           excluded.segments, excluded.from_region, excluded.to_region,
           excluded.folded_tx_id, excluded.folded_position)
    WHERE (t.folded_tx_id, t.folded_position)
          < (excluded.folded_tx_id, excluded.folded_position)
)
-- Messages whose SmsReceived was folded by an earlier range. (The rows inserted
-- just above are not visible to this statement, and carry their range already.)
-- Only the images beyond the row's place are new. The range's latest
-- SmsProcessed may be in the row already; then no later one is, and setting
-- it again changes nothing.
UPDATE {sms_messages} AS t SET
    status = CASE WHEN b.p IS NULL THEN t.status ELSE 'processed' END,
    processed_at = coalesce((b.p->>'processed_at')::timestamptz, t.processed_at),
    encoding = coalesce(b.p->>'encoding', t.encoding),
    segments = coalesce((b.p->>'segments')::smallint, t.segments),
    from_region = coalesce(b.p->>'from_region', t.from_region),
    to_region = coalesce(b.p->>'to_region', t.to_region),
    media_count = t.media_count + (
        SELECT count(*) FROM unnest(b.media_tx, b.media_position) AS m (tx_id, position)
        WHERE (m.tx_id, m.position) > (t.folded_tx_id, t.folded_position)
    ),
    folded_tx_id = b.last_tx,
    folded_position = b.last_position
FROM batch AS b
WHERE b.r IS NULL AND t.id = b.id
  AND (b.last_tx, b.last_position) > (t.folded_tx_id, t.folded_position)
"""


FOLD = SqlFold(
    TABLE,
    _FOLD,
    tables=(TABLE,),
    types={"received": SmsReceived, "processed": SmsProcessed, "attached": MediaAttached},
    reads={
        "data": (SmsReceived, SmsProcessed, MediaAttached),
        "r": (SmsReceived,),
        "p": (SmsProcessed,),
        "b.p": (SmsProcessed,),
    },
)


def MessagesProjector() -> SqlFold:
    """The `sms_messages` fold, by the name it had as a class of its own."""
    return FOLD


class MessageRow(msgspec.Struct, frozen=True):
    """A row of `sms_messages`, its fields in the order of COLUMNS."""

    id: UUID
    from_: str
    to: str
    message: str
    status: str
    received_at: datetime
    media_count: int
    processed_at: datetime | None
    encoding: str | None
    segments: int | None


COLUMNS = sql.SQL(
    'm.id, m."from", m."to", m.message, m.status::text, m.received_at, m.media_count,'
    " m.processed_at, m.encoding, m.segments"
)


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    """One message as one statement saw it: the row when the read model has
    folded every event of the stream, else the stream itself to fold."""

    place: Place
    """The stream's last event in the reading order."""
    row: MessageRow | None
    stored: bool
    """Whether the read model has a row for the message, current or not."""
    stream: list[RecordedEvent]
    """The stream, when `row` is None."""


# The row is current when its place is at or past the stream's last event
# visible to this statement's snapshot: it has folded every event of the
# message that a reader could know of. Row, place and (when the row is behind)
# the stream come from one snapshot, so an answer is never older than the
# stream an earlier answer came from. No row back: no such message.
GET_MESSAGE = sql.SQL(
    "WITH {stream_cte}"
    " SELECT last.tx_id::text, last.position, m.id IS NOT NULL,"
    " (m.folded_tx_id, m.folded_position) >= (last.tx_id, last.position), {columns},"
    " CASE WHEN m.id IS NULL OR (m.folded_tx_id, m.folded_position) < (last.tx_id, last.position)"
    " THEN {stream_json} END"
    " FROM last LEFT JOIN sms_messages AS m ON m.id = %(id)s"
).format(stream_cte=sql.SQL(STREAM_CTE), columns=COLUMNS, stream_json=sql.SQL(STREAM_JSON))


async def get_message(conn: psycopg.AsyncConnection[Any], message_id: UUID) -> MessageView | None:
    cur = await conn.execute(GET_MESSAGE, {"stream": stream_of(message_id), "id": message_id})
    found = await cur.fetchone()
    if found is None:
        return None
    tx_id, position, stored, current, *columns, stream = found
    return MessageView(
        place=Place(int(tx_id), position),
        row=MessageRow(*columns) if current else None,
        stored=stored,
        stream=[] if stream is None else decode_stream(stream),
    )


def list_statement(
    *,
    from_: str | None = None,
    to: str | None = None,
    status: str | None = None,
    limit: int = 10,
    offset: int = 0,
) -> tuple[bytes, tuple[Any, ...]]:
    """Newest first; ties by id. Only the filters given appear in the SQL, so
    the planner picks the matching index, which already holds the sort order.

    The page's ids are found first (skipping `offset` index entries costs
    little), then only those rows are fetched, each by its primary key: OFFSET
    0 keeps that a probe per row, where a generic plan, which cannot know how
    small the page is, would otherwise hash the whole table to join it.

    The page's size is written into the statement, and a first page has no
    OFFSET: a prepared statement's generic plan assumes that a LIMIT or OFFSET
    it cannot see keeps a tenth of the rows, and when that makes it dearer than
    a plan for the values at hand, PostgreSQL plans each run afresh. It did so
    for every `status=` query, and for every `from=` query once the table held
    millions of rows: 0.07-0.25 ms of its CPU a request, more than running a
    first page takes. Pages come in up to a hundred sizes: the statements stay few.
    """
    given = {"from": from_, "to": to, "status": status}
    params = [value for value in given.values() if value is not None]
    columns = tuple(column for column, value in given.items() if value is not None)
    if offset:
        return _list_sql(columns, limit, paged=True), (*params, offset)
    return _list_sql(columns, limit, paged=False), tuple(params)


@functools.cache
def _list_sql(columns: tuple[str, ...], limit: int, *, paged: bool) -> bytes:
    """The statement for the filters on `columns`, composed once per page size
    and kind: composed and quoted anew it cost each request about 30 µs of CPU."""
    conditions = [sql.SQL("{} = %s").format(sql.Identifier(column)) for column in columns]
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    skip = sql.SQL(" OFFSET %s") if paged else sql.SQL("")
    return (
        sql.SQL(
            "SELECT {columns} FROM ("
            " SELECT id, received_at FROM sms_messages{where}"
            " ORDER BY received_at DESC, id DESC LIMIT {limit}{skip}"
            ") AS page CROSS JOIN LATERAL ("
            " SELECT * FROM sms_messages WHERE id = page.id OFFSET 0"
            ") AS m ORDER BY page.received_at DESC, page.id DESC"
        )
        .format(columns=COLUMNS, where=where, limit=sql.Literal(int(limit)), skip=skip)
        .as_bytes()
    )


async def list_messages(
    conn: psycopg.AsyncConnection[Any],
    *,
    from_: str | None = None,
    to: str | None = None,
    status: str | None = None,
    limit: int = 10,
    offset: int = 0,
) -> list[MessageRow]:
    statement, params = list_statement(
        from_=from_, to=to, status=status, limit=limit, offset=offset
    )
    cur = await conn.execute(statement, params)
    return [MessageRow(*row) for row in await cur.fetchall()]
