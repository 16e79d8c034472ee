"""The counters behind /metrics: folded from the log, equal to a count of it, replayable."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from uuid_utils.compat import uuid7

from commands.event_store import Append, append
from domain.events import EventMetadata, SmsProcessed, SmsReceived, stream_of
from projections.counters import BUCKETS, TABLE, Counters, CountersProjector, read_counters
from projections.log import START, next_range
from projections.replay import replay
from projections.runner import catch_up
from tests.support.plans import fold_plan, nodes
from tests.support.postgres import Databases
from tests.support.seed import seed_messages


@pytest.fixture(scope="module")
def seeded_url(databases: Databases) -> str:
    url = databases.create()
    seed_messages(url, 3000, processed=0.7, media=0.2)
    return url


@pytest.fixture
async def conn(seeded_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(seeded_url, autocommit=True) as c:
        yield c


async def counted_from_the_log(conn: psycopg.AsyncConnection[Any]) -> Counters:
    """The same numbers, straight from the events, with the bucketing done here."""
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE type = 'SmsReceived'),"
        " count(*) FILTER (WHERE type = 'MediaAttached') FROM events"
    )
    row = await cur.fetchone()
    assert row is not None
    cur = await conn.execute(
        "SELECT extract(epoch FROM (p.data->>'processed_at')::timestamptz"
        " - (r.data->>'received_at')::timestamptz)::float8"
        " FROM events p JOIN events r ON r.stream_id = p.stream_id AND r.type = 'SmsReceived'"
        " WHERE p.type = 'SmsProcessed'"
    )
    seconds = [s for (s,) in await cur.fetchall()]
    buckets = [0] * (len(BUCKETS) + 1)
    for s in seconds:
        buckets[bisect.bisect_left(BUCKETS, s)] += 1
    return Counters(
        received=row[0],
        processed=len(seconds),
        media_attached=row[1],
        processing_seconds_sum=sum(seconds),
        processing_buckets=tuple(buckets),
    )


def same(a: Counters, b: Counters) -> bool:
    return (a.received, a.processed, a.media_attached, a.processing_buckets) == (
        b.received,
        b.processed,
        b.media_attached,
        b.processing_buckets,
    ) and abs(a.processing_seconds_sum - b.processing_seconds_sum) < 1e-6


async def test_the_fold_counts_what_the_log_holds_and_replay_agrees(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    expected = await counted_from_the_log(conn)
    assert 1900 < expected.processed < 2300
    assert expected.media_attached > 0

    # Small batches: SmsProcessed often folds in a later batch than its SmsReceived.
    await catch_up(conn, CountersProjector(), batch_size=37)
    incremental = await read_counters(conn)
    assert same(incremental, expected), (incremental, expected)
    assert incremental.queue_size == expected.received - expected.processed
    assert incremental.avg_processing_ms == pytest.approx(
        1000 * expected.processing_seconds_sum / expected.processed
    )

    await replay(conn, CountersProjector(), chunk=500)
    assert same(await read_counters(conn), expected)
    await replay(conn, CountersProjector(), chunk=500)
    assert same(await read_counters(conn), expected)


JOINS = ("Nested Loop", "Hash Join", "Merge Join")


def scans_the_range(plan: dict[str, Any]) -> bool:
    return any(n.get("CTE Name") == "batch" for n in nodes(plan))


async def test_the_fold_never_joins_the_range_with_itself(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """Such a join turns into a nested loop, the range's events by the range's
    events, wherever the planner misjudges the range's size (statistics taken
    before the log grew): a replay of 1,000,000 messages took 286 s instead of
    24. Here the planner may join only by nested loops, as it chose then."""
    found = await next_range(conn, START, 2000)
    assert found is not None
    async with conn.transaction(force_rollback=True):
        await conn.execute("SET LOCAL enable_hashjoin = off")
        await conn.execute("SET LOCAL enable_mergejoin = off")
        plan = await fold_plan(conn, CountersProjector(), {TABLE: TABLE}, START, found[0])
    assert scans_the_range(plan)
    for join in (n for n in nodes(plan) if n["Node Type"] in JOINS):
        sides = [c for c in join.get("Plans", []) if c.get("Parent Relationship") != "SubPlan"]
        assert sum(scans_the_range(side) for side in sides) <= 1, join


async def test_an_empty_log_reads_as_zeros(databases: Databases) -> None:
    async with await psycopg.AsyncConnection.connect(databases.create(), autocommit=True) as c:
        counters = await read_counters(c)
    assert (counters.received, counters.queue_size, counters.avg_processing_ms) == (0, 0, 0.0)


async def test_a_time_on_a_bound_falls_in_that_bounds_bucket(databases: Databases) -> None:
    deltas = [0.005, 0.0051, 0.06, 100.0]
    async with await psycopg.AsyncConnection.connect(databases.create(), autocommit=True) as c:
        for delta in deltas:
            at = datetime(2026, 11, 1, tzinfo=UTC)
            received = SmsReceived(
                message_id=uuid7(),
                from_="+12025550100",
                to="+447911123456",
                message="t",
                received_at=at,
            )
            processed = SmsProcessed(
                message_id=received.message_id,
                encoding="GSM-7",
                segments=1,
                from_region="US",
                to_region="GB",
                processed_at=at + timedelta(seconds=delta),
            )
            meta = EventMetadata(correlation_id=uuid7(), causation_id=uuid7())
            await append(
                c, [Append(stream_of(received.message_id), 0, [received, processed], meta)]
            )
        await catch_up(c, CountersProjector())
        counters = await read_counters(c)
    expected = [0] * (len(BUCKETS) + 1)
    for delta in deltas:
        expected[bisect.bisect_left(BUCKETS, delta)] += 1
    assert counters.processing_buckets == tuple(expected)
    assert expected[0] == 1  # 0.005 s is "le 0.005"
    assert counters.processing_seconds_sum == pytest.approx(sum(deltas))
