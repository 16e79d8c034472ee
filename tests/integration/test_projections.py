"""The subscription runner, the sms_messages fold and the processing stage."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from commands.event_store import Append, append
from commands.notify import CHANNEL
from domain.events import EventMetadata, SmsReceived, stream_of
from projections.log import Checkpoint, read_range
from projections.messages import MessagesProjector, get_message
from projections.processing import ProcessingStage
from projections.progress import PROGRESS, announcement
from projections.runner import ProjectionRunner, catch_up, checkpoint_of, step
from tests.support.phones import random_phone
from tests.support.postgres import Databases


def received(sender: str | None = None) -> SmsReceived:
    return SmsReceived(
        message_id=uuid7(),
        from_=sender or random_phone(),
        to="+447911123456",
        message="Hello",
        received_at=datetime.now(UTC),
    )


def meta() -> EventMetadata:
    command = uuid7()
    return EventMetadata(correlation_id=command, causation_id=command, request_id="r-1")


def new(event: SmsReceived) -> Append:
    return Append(stream_of(event.message_id), 0, [event], meta())


class Recorder:
    """A projector that writes down every position it is given, duplicates included."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def apply(
        self, conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint
    ) -> None:
        events = await read_range(conn, lo, hi)
        await conn.execute(
            "INSERT INTO recorded (projector, position) SELECT %s, unnest(%s::bigint[])",
            (self.name, [e.position for e in events]),
        )


async def test_a_transaction_that_commits_late_is_not_skipped(pool: AsyncConnectionPool) -> None:
    early, late = received(), received()
    projector = Recorder(f"late-{uuid7()}")
    async with pool.connection() as setup:
        await setup.execute("CREATE TABLE IF NOT EXISTS recorded (projector text, position bigint)")
        await catch_up(setup, projector)  # start from now: skip what other tests wrote
    async with pool.connection() as slow, pool.connection() as fast, pool.connection() as reader:
        async with slow.transaction():
            await append(slow, [new(early)])  # takes the lower position, stays uncommitted
            await append(fast, [new(late)])  # higher position, committed at once
            # A reader of "position > checkpoint" would take `late` now and never
            # come back for `early`. Ours waits below the open transaction.
            assert await catch_up(reader, projector) == 0
        assert await catch_up(reader, projector) == 2
        cur = await reader.execute(
            "SELECT e.stream_id FROM recorded r JOIN events e USING (position)"
            " WHERE r.projector = %s ORDER BY e.position",
            (projector.name,),
        )
        streams = [row[0] for row in await cur.fetchall()]
    assert streams == [stream_of(early.message_id), stream_of(late.message_id)]


async def test_out_of_order_commits_under_load_are_each_folded_exactly_once(
    databases: Databases,
) -> None:
    url = databases.create()
    names = ["recorder-a", "recorder-b"]
    async with AsyncConnectionPool(
        url, min_size=2, max_size=40, kwargs={"autocommit": True}
    ) as pool:
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE recorded (projector text, position bigint)")
        runner = ProjectionRunner(
            url, [Recorder(n) for n in names], batch_size=7, poll_interval=0.02
        )
        running = asyncio.create_task(runner.run())
        rng = random.Random(3)

        async def writer(i: int) -> None:
            async with pool.connection() as conn, conn.transaction():
                await append(conn, [new(received()) for _ in range(rng.randint(1, 3))])
                # Hold some transactions open well past later ones' commits.
                await asyncio.sleep(rng.choice([0, 0, 0.01, 0.05, 0.3]))
            if i % 10 == 0:
                runner.poke()

        await asyncio.gather(*(writer(i) for i in range(120)))
        async with pool.connection() as conn:
            for _ in range(200):
                # At the last event in reading order, (tx_id, position): with
                # commits out of order, that is not always the highest position.
                cur = await conn.execute(
                    "SELECT count(*) FROM projection_checkpoints p"
                    " WHERE p.name = ANY(%s) AND (p.tx_id, p.position) ="
                    " (SELECT tx_id, position FROM events ORDER BY tx_id DESC, position DESC"
                    " LIMIT 1)",
                    (names,),
                )
                if await cur.fetchone() == (2,):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the projectors never reached the end of the log")
            runner.stop()
            await running
            cur = await conn.execute(
                "SELECT projector, count(*), count(DISTINCT position) FROM recorded GROUP BY 1"
            )
            seen = {row[0]: row[1:] for row in await cur.fetchall()}
            cur = await conn.execute("SELECT count(*) FROM events")
            row = await cur.fetchone()
    assert row is not None
    total = row[0]
    assert total > 120
    assert seen == dict.fromkeys(names, (total, total))


async def test_the_messages_projector_folds_the_lifecycle(pool: AsyncConnectionPool) -> None:
    event = received()
    async with pool.connection() as conn:
        await append(conn, [new(event)])
        await catch_up(conn, MessagesProjector())
        view = await get_message(conn, event.message_id)
        assert view is not None
        stored = view.row
        assert stored is not None
        assert (stored.status, stored.from_, stored.message, stored.media_count) == (
            "stored",
            event.from_,
            "Hello",
            0,
        )
        assert stored.received_at == event.received_at

        await catch_up(conn, ProcessingStage())
        await catch_up(conn, MessagesProjector())
        view = await get_message(conn, event.message_id)
    assert view is not None
    processed = view.row
    assert processed is not None
    assert (processed.status, processed.encoding, processed.segments) == ("processed", "GSM-7", 1)
    assert processed.processed_at is not None
    assert processed.processed_at >= event.received_at


async def test_processing_appends_once_with_causation_and_correlation(
    pool: AsyncConnectionPool,
) -> None:
    event, metadata = received(), meta()
    async with pool.connection() as conn:
        await append(conn, [Append(stream_of(event.message_id), 0, [event], metadata)])

    async def process() -> int:
        async with pool.connection() as conn:
            return await catch_up(conn, ProcessingStage())

    # Several instances at once: the lease lets one work at a time.
    await asyncio.gather(*(process() for _ in range(4)))
    await process()
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, version, metadata->>'causation_id', metadata->>'correlation_id',"
            " metadata->>'actor' FROM events WHERE stream_id = %s ORDER BY version",
            (stream_of(event.message_id),),
        )
        rows = await cur.fetchall()
        cur = await conn.execute(
            "SELECT event_id::text FROM events WHERE stream_id = %s AND version = 1",
            (stream_of(event.message_id),),
        )
        first = await cur.fetchone()
    assert first is not None
    assert [(r[0], r[1]) for r in rows] == [("SmsReceived", 1), ("SmsProcessed", 2)]
    assert rows[1][2:] == (first[0], str(metadata.correlation_id), "processing-stage")


async def test_a_standby_waits_while_the_lease_is_held(pool: AsyncConnectionPool) -> None:
    projector = MessagesProjector()
    async with pool.connection() as holder, pool.connection() as standby:
        await catch_up(holder, projector)
        async with holder.transaction():
            await holder.execute(
                "SELECT 1 FROM projection_checkpoints WHERE name = %s FOR UPDATE", (projector.name,)
            )
            assert await step(standby, projector, 100) is None
        assert await step(standby, projector, 100) == 0


async def test_the_checkpoint_moves_with_the_fold(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await catch_up(conn, MessagesProjector())
        before = await checkpoint_of(conn, "sms_messages")
        await append(conn, [new(received()) for _ in range(3)])
        assert await catch_up(conn, MessagesProjector()) == 3
        after = await checkpoint_of(conn, "sms_messages")
    assert after > before


async def test_each_folded_batch_is_announced_and_a_reactor_says_the_log_grew_if_it_did(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    # (When they are sent, after the commit or inside it, a listener cannot
    # tell: what is checked is what each batch says, and that an empty one
    # says nothing.)
    processing, messages = ProcessingStage(), MessagesProjector()
    async with pool.connection() as conn:
        for projector in (processing, messages):
            await catch_up(conn, projector)
        listener = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
        async with listener:
            await listener.execute(f"LISTEN {PROGRESS}")
            await listener.execute(f"LISTEN {CHANNEL}")
            await append(conn, [new(received())])
            assert await step(conn, processing, 100) == 1  # appends SmsProcessed
            processed = await checkpoint_of(conn, processing.name)
            assert await step(conn, messages, 100) == 2
            folded = await checkpoint_of(conn, messages.name)
            assert await step(conn, processing, 100) == 1  # its own event: nothing to append
            passed = await checkpoint_of(conn, processing.name)
            assert await step(conn, processing, 100) == 0  # nothing new: nothing said
            await listener.execute("SELECT 1")  # what was sent has arrived
            heard = [(n.channel, n.payload) async for n in listener.notifies(timeout=0.2)]
    assert heard == [
        (PROGRESS, announcement(processing.name, processed)),
        (CHANNEL, ""),
        (PROGRESS, announcement(messages.name, folded)),
        (PROGRESS, announcement(processing.name, passed)),
    ]


async def test_an_announcement_that_fails_does_not_undo_or_stall_its_folded_batch(
    pool: AsyncConnectionPool,
) -> None:
    # A NOTIFY payload is at most 8,000 bytes: this projector's announcement,
    # which carries its name, is refused by the server after the batch commits.
    projector = Recorder("r" * 8_000)
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS recorded (projector text, position bigint)")
        await catch_up(conn, projector)
        before = await checkpoint_of(conn, projector.name)
        await append(conn, [new(received()) for _ in range(3)])
        assert await step(conn, projector, 100) == 3
        after = await checkpoint_of(conn, projector.name)
        cur = await conn.execute(
            "SELECT count(*) FROM recorded WHERE projector = %s AND position > %s",
            (projector.name, before.position),
        )
        assert await cur.fetchone() == (3,)
    assert after > before
