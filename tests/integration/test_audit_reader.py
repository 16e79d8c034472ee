"""The auditors' reader: `after` is a position, the order is the projectors' (tx_id, position)."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from commands.event_store import Append, append
from domain.events import EventMetadata, SmsReceived, stream_of
from projections.log import read_after
from tests.support.phones import random_phone


def new() -> Append:
    event = SmsReceived(
        message_id=uuid7(),
        from_=random_phone(),
        to="+447911123456",
        message="audit me",
        received_at=datetime.now(UTC),
    )
    command = uuid7()
    return Append(
        stream_of(event.message_id),
        0,
        [event],
        EventMetadata(correlation_id=command, causation_id=command),
    )


async def last_position(pool: AsyncConnectionPool) -> int:
    """The position of the last event in reading order: where a new reader starts."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT coalesce((SELECT position FROM events"
            " ORDER BY tx_id DESC, position DESC LIMIT 1), 0)"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_a_late_commit_is_neither_skipped_nor_shown_early(pool: AsyncConnectionPool) -> None:
    start = await last_position(pool)
    early, late = new(), new()
    async with pool.connection() as slow, pool.connection() as fast, pool.connection() as reader:
        async with slow.transaction():
            await append(slow, [early])  # the lower position, not yet committed
            await append(fast, [late])  # a higher one, committed at once
            assert await read_after(reader, start, 100) == []
        page = await read_after(reader, start, 100)
    assert [e.stream_id for e in page] == [early.stream_id, late.stream_id]


async def test_following_next_after_sees_every_event_once_even_out_of_position_order(
    pool: AsyncConnectionPool,
) -> None:
    start = await last_position(pool)
    first_id, then = new(), new()
    async with pool.connection() as slow, pool.connection() as fast, pool.connection() as reader:
        async with slow.transaction():
            await slow.execute("SELECT pg_current_xact_id()")  # takes its id first...
            await append(fast, [then])  # ...another transaction writes and commits...
            await append(slow, [first_id])  # ...then this one writes, at a higher position
        seen, after = [], start
        while page := await read_after(reader, after, 1):
            seen += page
            after = page[-1].position
    assert [e.stream_id for e in seen] == [first_id.stream_id, then.stream_id]
    # Reading order is by transaction: here it runs against position order.
    assert seen[0].position > seen[1].position


async def test_type_and_stream_filters_and_a_position_no_event_has(
    pool: AsyncConnectionPool,
) -> None:
    start = await last_position(pool)
    one, two = new(), new()
    async with pool.connection() as conn:
        await append(conn, [one])
        await append(conn, [two])
        mine = await read_after(conn, start, 10, stream_id=two.stream_id)
        assert [e.stream_id for e in mine] == [two.stream_id]
        assert await read_after(conn, start, 10, event_type="SmsProcessed") == []
        typed = await read_after(conn, start, 10, event_type="SmsReceived")
        assert [e.stream_id for e in typed] == [one.stream_id, two.stream_id]
        # Far beyond the end: nothing yet, and nothing is skipped later either.
        assert await read_after(conn, 2**62, 10) == []
