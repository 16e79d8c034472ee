"""AttachMedia on real PostgreSQL: the stream's expected version, blobs, and races."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from commands.attach_media import attach_media
from commands.event_store import Append, append, read_stream
from commands.handler import Namespace, lock
from domain.commands import AttachMedia, Image
from domain.events import EventMetadata, MediaAttached, SmsProcessed, SmsReceived, stream_of
from domain.message import UnknownMessage
from projections.processing import ProcessingStage
from projections.runner import catch_up
from tests.support.media import blob_rows, eventually, scalar
from tests.support.phones import random_phone


def meta() -> EventMetadata:
    command = uuid7()
    return EventMetadata(correlation_id=command, causation_id=command)


def image(n: int) -> Image:
    return Image(
        sha256=f"{n:064x}", content_type="image/png", format="PNG", size=10, width=4, height=3
    )


def unique_image() -> Image:
    return image(uuid7().int)


async def a_message(pool: AsyncConnectionPool) -> SmsReceived:
    event = SmsReceived(
        message_id=uuid7(),
        from_=random_phone(),
        to="+447911123456",
        message="Hello",
        received_at=datetime.now(UTC),
    )
    async with pool.connection() as conn:
        await append(conn, [Append(stream_of(event.message_id), 0, [event], meta())])
    return event


async def attach(pool: AsyncConnectionPool, message: SmsReceived, *images: Image) -> int:
    async with pool.connection() as conn:
        outcome = await attach_media(
            conn, AttachMedia(message_id=message.message_id, images=images), meta()
        )
    assert not isinstance(outcome.decision, UnknownMessage)
    return len(outcome.decision)


async def versions(pool: AsyncConnectionPool, message: SmsReceived) -> list[tuple[int, str]]:
    async with pool.connection() as conn:
        return [(r.version, r.type) for r in await read_stream(conn, stream_of(message.message_id))]


async def waiting_on_a_lock(pool: AsyncConnectionPool) -> bool:
    waiting = await scalar(
        pool,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return bool(waiting)


async def test_images_are_appended_after_the_stream_with_one_blob_row_each(
    pool: AsyncConnectionPool,
) -> None:
    message = await a_message(pool)
    first, second = unique_image(), unique_image()
    assert await attach(pool, message, first, second) == 2
    assert await attach(pool, message, second) == 0
    assert await versions(pool, message) == [
        (1, "SmsReceived"),
        (2, "MediaAttached"),
        (3, "MediaAttached"),
    ]
    assert (await blob_rows(pool, first.sha256), await blob_rows(pool, second.sha256)) == (1, 1)


async def test_an_unknown_message_is_refused_and_nothing_written(pool: AsyncConnectionPool) -> None:
    shared = unique_image()
    command = AttachMedia(message_id=uuid7(), images=(shared,))
    async with pool.connection() as conn:
        handled = await attach_media(conn, command, meta())
    assert handled.decision == UnknownMessage(command.message_id)
    assert (handled.state, handled.place) == (None, None)
    assert await blob_rows(pool, shared.sha256) == 0


async def test_an_append_by_another_writer_meanwhile_is_decided_again(
    pool: AsyncConnectionPool,
) -> None:
    message = await a_message(pool)
    processed = SmsProcessed(
        message_id=message.message_id,
        encoding="GSM-7",
        segments=1,
        from_region="US",
        to_region="GB",
        processed_at=datetime.now(UTC),
    )
    async with pool.connection() as other:
        async with other.transaction():
            # The processing stage takes version 2 but has not committed...
            await append(other, [Append(stream_of(message.message_id), 1, [processed], meta())])
            # ...when an upload reads version 1 and appends after it: its insert
            # waits on the other's, then fails when that one commits.
            attaching = asyncio.create_task(attach(pool, message, unique_image()))
            await eventually(lambda: waiting_on_a_lock(pool))
            assert not attaching.done()
        assert await attaching == 1
    assert await versions(pool, message) == [
        (1, "SmsReceived"),
        (2, "SmsProcessed"),
        (3, "MediaAttached"),
    ]


async def test_the_processing_stage_waits_for_an_upload_instead_of_conflicting(
    pool: AsyncConnectionPool,
) -> None:
    message = await a_message(pool)
    stream = stream_of(message.message_id)
    attached = MediaAttached(
        message_id=message.message_id,
        sha256=unique_image().sha256,
        content_type="image/png",
        format="PNG",
        size=10,
        width=4,
        height=3,
        attached_at=datetime.now(UTC),
    )
    async with pool.connection() as upload, pool.connection() as stage:
        async with upload.transaction():
            # An upload holds the stream and has appended version 2, uncommitted.
            await lock(upload, Namespace.STREAM, [stream])
            await append(upload, [Append(stream, 1, [attached], meta())])
            processing = asyncio.create_task(catch_up(stage, ProcessingStage()))
            await eventually(lambda: waiting_on_a_lock(pool))
            assert not processing.done()
        await processing  # no ConcurrencyConflict: it read the stream after the upload
    assert await versions(pool, message) == [
        (1, "SmsReceived"),
        (2, "MediaAttached"),
        (3, "SmsProcessed"),
    ]


async def test_overlapping_sets_of_images_on_many_messages_at_once(
    pool: AsyncConnectionPool,
) -> None:
    # Each message gets the same images in a different order, all at once:
    # every upload lands, and each image has one blob row.
    shared = [unique_image() for _ in range(5)]
    messages = [await a_message(pool) for _ in range(12)]
    added = await asyncio.gather(
        *(attach(pool, m, *shared[i % 5 :], *shared[: i % 5]) for i, m in enumerate(messages))
    )
    assert added == [5] * 12
    rows = await scalar(
        pool,
        "SELECT count(*) FROM media_blobs WHERE sha256 = ANY(%s)",
        [i.sha256 for i in shared],
    )
    assert rows == 5
