"""The event store's contract, each property proved on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from commands.event_store import Append, ConcurrencyConflict, DuplicateEvent, append, read_stream
from domain.events import EventMetadata, SmsProcessed, SmsReceived, stream_of

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def received() -> SmsReceived:
    return SmsReceived(
        message_id=uuid7(),
        from_="+14155550100",
        to="+447911123456",
        message="Hi",
        received_at=NOW,
    )


def processed(event: SmsReceived) -> SmsProcessed:
    return SmsProcessed(
        message_id=event.message_id,
        encoding="GSM-7",
        segments=1,
        from_region="US",
        to_region="GB",
        processed_at=NOW,
    )


def meta(actor: str = "tester") -> EventMetadata:
    command = uuid7()
    return EventMetadata(
        correlation_id=command, causation_id=command, actor=actor, request_id="req-1"
    )


async def new_stream(pool: AsyncConnectionPool) -> SmsReceived:
    event = received()
    async with pool.connection() as conn:
        await append(conn, [Append(stream_of(event.message_id), 0, [event], meta())])
    return event


async def test_appended_events_read_back_in_version_order_with_metadata(
    pool: AsyncConnectionPool,
) -> None:
    first = await new_stream(pool)
    metadata = meta("key-42")
    async with pool.connection() as conn:
        await append(conn, [Append(stream_of(first.message_id), 1, [processed(first)], metadata)])
        recorded = await read_stream(conn, stream_of(first.message_id))
    assert [(r.version, r.type) for r in recorded] == [(1, "SmsReceived"), (2, "SmsProcessed")]
    assert recorded[0].decode() == first
    assert recorded[1].decode() == processed(first)
    assert recorded[0].position < recorded[1].position
    assert msgspec.json.decode(recorded[1].metadata, type=EventMetadata) == metadata


async def test_each_event_records_its_writing_transaction(pool: AsyncConnectionPool) -> None:
    event = received()
    async with pool.connection() as conn, conn.transaction():
        await append(conn, [Append(stream_of(event.message_id), 0, [event], meta())])
        cur = await conn.execute("SELECT pg_current_xact_id()")
        row = await cur.fetchone()
        assert row is not None
        current = row[0]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT tx_id FROM events WHERE stream_id = %s", (stream_of(event.message_id),)
        )
        assert await cur.fetchall() == [(current,)]


async def test_a_stale_expected_version_is_a_conflict(pool: AsyncConnectionPool) -> None:
    first = await new_stream(pool)
    async with pool.connection() as conn:
        with pytest.raises(ConcurrencyConflict) as caught:
            await append(conn, [Append(stream_of(first.message_id), 0, [received()], meta())])
    assert caught.value.stream_id == stream_of(first.message_id)


async def test_an_expected_version_beyond_the_stream_is_a_conflict_not_a_gap(
    pool: AsyncConnectionPool,
) -> None:
    first = await new_stream(pool)
    async with pool.connection() as conn:
        with pytest.raises(ConcurrencyConflict):
            await append(conn, [Append(stream_of(first.message_id), 5, [processed(first)], meta())])
        assert len(await read_stream(conn, stream_of(first.message_id))) == 1


async def test_many_racing_writers_leave_a_gapless_stream(pool: AsyncConnectionPool) -> None:
    first = await new_stream(pool)
    stream = stream_of(first.message_id)

    async def writer() -> bool:
        async with pool.connection() as conn:
            try:
                async with conn.transaction():
                    await append(conn, [Append(stream, 1, [processed(first)], meta())])
                    # Hold the insert uncommitted so the others' inserts overlap it.
                    await asyncio.sleep(0.05)
            except ConcurrencyConflict:
                return False
            return True

    wins = await asyncio.gather(*(writer() for _ in range(10)))
    assert sum(wins) == 1
    async with pool.connection() as conn:
        assert [r.version for r in await read_stream(conn, stream)] == [1, 2]


async def test_the_same_event_id_twice_is_a_duplicate(pool: AsyncConnectionPool) -> None:
    event = received()
    event_id = uuid7()
    async with pool.connection() as conn:
        await append(conn, [Append(stream_of(event.message_id), 0, [event], meta(), [event_id])])
        other = received()
        with pytest.raises(DuplicateEvent):
            await append(
                conn, [Append(stream_of(other.message_id), 0, [other], meta(), [event_id])]
            )


async def test_several_streams_append_in_one_statement(pool: AsyncConnectionPool) -> None:
    events = [received() for _ in range(3)]
    async with pool.connection() as conn:
        await append(conn, [Append(stream_of(e.message_id), 0, [e], meta()) for e in events])
        for e in events:
            assert [r.decode() for r in await read_stream(conn, stream_of(e.message_id))] == [e]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'Tampered' WHERE stream_id = %s",
        "DELETE FROM events WHERE stream_id = %s",
        "TRUNCATE events",
    ],
)
async def test_the_log_refuses_update_delete_and_truncate(
    pool: AsyncConnectionPool, statement: str
) -> None:
    event = await new_stream(pool)
    stream = stream_of(event.message_id)
    async with pool.connection() as conn:
        params = (stream,) if "%s" in statement else None
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            await conn.execute(statement, params)
        assert len(await read_stream(conn, stream)) == 1
