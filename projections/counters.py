"""The `message_counters` read model: totals for /metrics, read in O(1).

One row, folded from the log like any read model (so replay rebuilds it):
messages received, processed and media attached, and the processing time of
each processed message, summed and counted per histogram bucket. Processing
time is `SmsProcessed.processed_at - SmsReceived.received_at`: from the
moment the command was accepted to the moment the processing stage decided,
both read from the database's clock.
"""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg

from domain.events import MediaAttached, SmsProcessed, SmsReceived
from projections.fold import SqlFold

TABLE = "message_counters"

# Upper bounds (seconds) of the processing-time buckets; +Inf is implied.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_FOLD = """
WITH batch AS MATERIALIZED (
    SELECT stream_id, type, data FROM {events}
    WHERE {in_range} AND type IN ({received}, {processed}, {attached})
),
processed AS MATERIALIZED (
    -- The bucket is the number of bounds below the value (Prometheus buckets
    -- are "less or equal"). width_bucket counts thresholds at or below its
    -- operand, so it is asked about the negated value against the negated
    -- bounds: bounds >= s, subtracted from all of them.
    SELECT s.seconds,
           cardinality(%(bounds)s::float8[])
           - width_bucket(-s.seconds, %(negated)s::float8[]) AS bucket
    -- Each message in the range once, with its SmsReceived if the range holds
    -- it (mostly) and its SmsProcessed events: a grouping, whose cost no
    -- misjudged range size can make quadratic as a join's could.
    FROM (
        SELECT stream_id,
               (array_agg(data) FILTER (WHERE type = {received}))[1] AS received,
               array_agg(data) FILTER (WHERE type = {processed}) AS processed
        FROM batch GROUP BY stream_id
    ) AS m
    CROSS JOIN LATERAL unnest(m.processed) AS p (data)
    -- Else the SmsReceived is one probe of the stream's index (OFFSET 0 keeps
    -- it one): as a join, a generic plan that cannot know how short the range
    -- is could hash the whole log instead. (COALESCE runs the probe only when
    -- the range had none.)
    CROSS JOIN LATERAL (
        SELECT coalesce(m.received, (
            SELECT data FROM {events} WHERE stream_id = m.stream_id AND version = 1 OFFSET 0
        )) AS data
        OFFSET 0  -- once a message: pulled up, the probe would run for each use of r
    ) AS r
    CROSS JOIN LATERAL (
        SELECT extract(epoch FROM (p.data->>'processed_at')::timestamptz
                                - (r.data->>'received_at')::timestamptz)::float8 AS seconds
    ) AS s
),
buckets AS (
    SELECT array_agg(coalesce(c.n, 0) ORDER BY i) AS counts
    FROM generate_series(0, cardinality(%(bounds)s::float8[])) AS i
    LEFT JOIN (SELECT bucket, count(*) AS n FROM processed GROUP BY bucket) AS c ON c.bucket = i
)
INSERT INTO {message_counters} AS t
    (id, received, processed, media_attached, processing_seconds_sum, processing_buckets)
SELECT true,
       (SELECT count(*) FROM batch WHERE type = {received}),
       (SELECT count(*) FROM processed),
       (SELECT count(*) FROM batch WHERE type = {attached}),
       (SELECT coalesce(sum(seconds), 0) FROM processed),
       (SELECT counts FROM buckets)
ON CONFLICT (id) DO UPDATE SET
    received = t.received + excluded.received,
    processed = t.processed + excluded.processed,
    media_attached = t.media_attached + excluded.media_attached,
    processing_seconds_sum = t.processing_seconds_sum + excluded.processing_seconds_sum,
    processing_buckets = ARRAY(
        SELECT coalesce(a, 0) + coalesce(b, 0)
        FROM unnest(t.processing_buckets, excluded.processing_buckets) WITH ORDINALITY AS u(a, b, n)
        ORDER BY n
    )
"""


FOLD = SqlFold(
    TABLE,
    _FOLD,
    tables=(TABLE,),
    types={"received": SmsReceived, "processed": SmsProcessed, "attached": MediaAttached},
    reads={"p.data": (SmsProcessed,), "r.data": (SmsReceived,)},
    params={"bounds": list(BUCKETS), "negated": [-b for b in reversed(BUCKETS)]},
)


def CountersProjector() -> SqlFold:
    """The `message_counters` fold, by the name it had as a class of its own."""
    return FOLD


class Counters(msgspec.Struct, frozen=True, kw_only=True):
    received: int = 0
    processed: int = 0
    media_attached: int = 0
    processing_seconds_sum: float = 0.0
    processing_buckets: tuple[int, ...] = (0,) * (len(BUCKETS) + 1)

    @property
    def queue_size(self) -> int:
        """Messages received and not yet processed (as far as the fold has seen)."""
        return self.received - self.processed

    @property
    def avg_processing_ms(self) -> float:
        return 1000 * self.processing_seconds_sum / self.processed if self.processed else 0.0


async def read_counters(conn: psycopg.AsyncConnection[Any]) -> Counters:
    cur = await conn.execute(
        "SELECT received, processed, media_attached, processing_seconds_sum, processing_buckets"
        " FROM message_counters"
    )
    row = await cur.fetchone()
    if row is None:
        return Counters()
    received, processed, media, seconds, buckets = row
    return Counters(
        received=received,
        processed=processed,
        media_attached=media,
        processing_seconds_sum=seconds,
        processing_buckets=tuple(buckets),
    )
