"""Folding a range of the log again changes nothing: retries and overlaps are harmless.

The checkpoint already makes each event folded once; these tests hold the
folds to the stronger promise that a range folded twice (or ranges that
overlap) leaves `sms_messages`, `message_media` and `media_blobs` as one
fold leaves them.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from uuid_utils.compat import uuid7

from commands.event_store import Append, append, read_stream
from domain.commands import Image, ProcessSms
from domain.decider import Rejection
from domain.events import stream_of
from domain.message import message_decider
from migrations import migrate
from projections import media, messages
from projections.log import START, Checkpoint, next_range
from projections.media import MediaProjector, media_of
from projections.messages import MessagesProjector
from projections.replay import replay
from projections.runner import catch_up, ensure_checkpoints, step
from tests.support.postgres import Databases
from tests.support.seed import seed_messages
from tests.support.streams import a_message, attach, meta

IMAGES = [
    Image(sha256=f"{n:064x}", content_type="image/png", format="PNG", size=n, width=n, height=3)
    for n in range(1, 7)
]
TABLES = (messages.TABLE, media.LINKS, media.BLOBS)
ORDER = {messages.TABLE: "id", media.LINKS: "message_id, stream_version", media.BLOBS: "sha256"}

Snapshot = dict[str, list[tuple[Any, ...]]]


async def process(conn: psycopg.AsyncConnection[Any], message_id: UUID) -> None:
    """What the processing stage appends, appended on `conn` (in its transaction, if open)."""
    stream = stream_of(message_id)
    state = message_decider.fold(r.decode() for r in await read_stream(conn, stream))
    assert state is not None
    processed = message_decider.decide(ProcessSms(message_id=message_id), state, datetime.now(UTC))
    assert not isinstance(processed, Rejection)
    await append(conn, [Append(stream, state.version, processed, meta())])


@pytest.fixture(scope="module")
def seeded_url(databases: Databases) -> str:
    url = databases.create()
    seed_messages(url, 600, processed=0.8, media=0.3)
    asyncio.run(with_images_and_processing(url))
    return url


@pytest.fixture
async def conn(seeded_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(seeded_url, autocommit=True) as c:
        yield c


async def with_images_and_processing(url: str) -> None:
    """Messages with several uploads of several images each (shared between
    messages), some processed between two uploads, some after."""
    rng = random.Random(8)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for i in range(60):
            message_id = await a_message(conn)
            await attach(conn, message_id, *rng.sample(IMAGES, 3))
            if i % 3 == 0:
                await process(conn, message_id)
            await attach(conn, message_id, *rng.sample(IMAGES, 2))
            if i % 3 == 1:
                await process(conn, message_id)


async def ranges(conn: psycopg.AsyncConnection[Any], size: int) -> list[Checkpoint]:
    """The ends of the log's consecutive ranges of `size` events, START first."""
    ends, at = [START], START
    while found := await next_range(conn, at, size):
        at = found[0]
        ends.append(at)
    return ends


async def scratch(conn: psycopg.AsyncConnection[Any]) -> dict[str, str]:
    """Empty tables shaped like the read models (keys included), for a fold of a test's own."""
    names = {t: f"{t}_{uuid7().hex[-12:]}" for t in TABLES}
    for table, name in names.items():
        await conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                sql.Identifier(name), sql.Identifier(table)
            )
        )
    return names


async def fold_into(
    conn: psycopg.AsyncConnection[Any], tables: dict[str, str], lo: Checkpoint, hi: Checkpoint
) -> None:
    async with conn.transaction():
        await MessagesProjector().rebuild(conn, tables, lo, hi)
        await MediaProjector().rebuild(conn, tables, lo, hi)


async def snapshot(
    conn: psycopg.AsyncConnection[Any], tables: dict[str, str] | None = None
) -> Snapshot:
    taken = {}
    for table in TABLES:
        name = tables[table] if tables else table
        cur = await conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY {}").format(
                sql.Identifier(name), sql.SQL(ORDER[table])
            )
        )
        taken[table] = await cur.fetchall()
    return taken


async def folded_once(conn: psycopg.AsyncConnection[Any], ends: list[Checkpoint]) -> Snapshot:
    once = await scratch(conn)
    for lo, hi in itertools.pairwise(ends):
        await fold_into(conn, once, lo, hi)
    return await snapshot(conn, once)


async def test_each_range_folded_twice_equals_each_folded_once(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    ends = await ranges(conn, 37)
    once = await folded_once(conn, ends)
    assert len(once[messages.TABLE]) == 660
    assert sum(row[6] for row in once[messages.TABLE]) == len(once[media.LINKS]) > 300
    assert {row[5] for row in once[messages.TABLE]} == {"stored", "processed"}

    twice = await scratch(conn)
    for lo, hi in itertools.pairwise(ends):
        await fold_into(conn, twice, lo, hi)
        await fold_into(conn, twice, lo, hi)
    assert await snapshot(conn, twice) == once

    await fold_into(conn, twice, START, ends[-1])  # and the whole log once more
    assert await snapshot(conn, twice) == once


async def test_overlapping_ranges_equal_consecutive_ones_at_every_step(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """Each range starts a batch back: half of it folded already, the rest new.

    Many messages have events on both sides of the place a range starts from,
    so each kind of row meets a range that is partly behind it.
    """
    ends = await ranges(conn, 29)
    once, overlapping = await scratch(conn), await scratch(conn)
    for i in range(1, len(ends)):
        await fold_into(conn, once, ends[i - 1], ends[i])
        await fold_into(conn, overlapping, ends[max(i - 2, 0)], ends[i])
        assert await snapshot(conn, overlapping) == await snapshot(conn, once), f"range {i}"


async def test_the_live_projectors_fold_again_from_an_older_checkpoint_to_the_same_tables(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    """A fold committed whose checkpoint did not (or a checkpoint restored from
    an older backup): the projectors go over those events again."""
    for projector in (MessagesProjector(), MediaProjector()):
        await catch_up(conn, projector, batch_size=41)
    live = await snapshot(conn)
    assert live == await folded_once(conn, await ranges(conn, 1000))

    ends = await ranges(conn, 100)
    for back in (ends[len(ends) // 2], START):
        for projector in (MessagesProjector(), MediaProjector()):
            await conn.execute(
                "UPDATE projection_checkpoints SET tx_id = %s::text::xid8, position = %s"
                " WHERE name = %s",
                (back.tx_id, back.position, projector.name),
            )
            assert await catch_up(conn, projector, batch_size=53) > 0
        assert await snapshot(conn) == live


async def test_an_image_committed_after_a_later_version_of_its_stream_is_counted(
    conn: psycopg.AsyncConnection[Any], seeded_url: str
) -> None:
    """The processing stage holds a transaction id from the start of its batch,
    so its SmsProcessed (a stream's next version) can come before an image
    attached meanwhile (the version before) in the reading order. A mark of
    the last version folded would then skip the image."""
    message_id = await a_message(conn)
    for projector in (MessagesProjector(), MediaProjector()):
        await catch_up(conn, projector)
    async with (
        await psycopg.AsyncConnection.connect(seeded_url, autocommit=True) as stage,
        stage.transaction(),
    ):
        await stage.execute("SELECT pg_current_xact_id()")  # its id, taken first
        await attach(conn, message_id, IMAGES[0])  # version 2, a later id, committed
        await process(stage, message_id)  # version 3, the earlier id
    cur = await conn.execute(
        "SELECT version FROM events WHERE stream_id = %s ORDER BY tx_id, position",
        (stream_of(message_id),),
    )
    assert [v for (v,) in await cur.fetchall()] == [1, 3, 2]

    async def one_event_each() -> None:
        for projector in (MessagesProjector(), MediaProjector()):
            assert await step(conn, projector, 1) == 1

    await one_event_each()  # version 3
    # The row has folded version 3 but not the image before it in the log: it
    # is behind the stream, which answers instead.
    view = await messages.get_message(conn, message_id)
    assert view is not None
    assert (view.row, view.stored, len(view.stream)) == (None, True, 3)
    media = await media_of(conn, message_id)
    assert media is not None
    assert media.rows is None  # the image is still to come

    await one_event_each()  # version 2
    view = await messages.get_message(conn, message_id)
    assert view is not None
    assert view.row is not None
    assert (view.row.status, view.row.media_count) == ("processed", 1)
    media = await media_of(conn, message_id)
    assert media is not None
    assert media.rows is not None
    assert [i.sha256 for i in media.rows] == [IMAGES[0].sha256]
    assert await snapshot(conn) == await folded_once(conn, await ranges(conn, 1000))


async def test_the_migration_gives_rows_folded_before_it_the_place_the_fold_gives(
    databases: Databases,
) -> None:
    url = databases.create()
    seed_messages(url, 400, seed=3, processed=0.9, media=0.4)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await ensure_checkpoints(conn, [messages.TABLE])
        for _ in range(9):  # part of the log: some messages folded only in part
            await step(conn, MessagesProjector(), 61)
        folded = await snapshot(conn)
        assert 0 < len(folded[messages.TABLE]) < 400
        cur = await conn.execute(
            "SELECT count(*) FROM sms_messages AS m"
            " WHERE (m.folded_tx_id, m.folded_position) < (SELECT e.tx_id, e.position"
            "  FROM events AS e WHERE e.stream_id = 'sms-' || m.id"
            "  ORDER BY e.tx_id DESC, e.position DESC LIMIT 1)"
        )
        partly = await cur.fetchone()
        assert partly is not None
        assert partly[0] > 0  # rows whose later events the checkpoint has not reached
        # The table as it was before the migration, and the ledger without it.
        await conn.execute(
            "ALTER TABLE sms_messages DROP COLUMN folded_tx_id, DROP COLUMN folded_position"
        )
        await conn.execute("DELETE FROM schema_migrations WHERE name = '0008_fold_versions'")
    assert migrate(url) == ["0008_fold_versions"]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        assert await snapshot(conn) == folded
        await catch_up(conn, MessagesProjector(), batch_size=61)
        live = await snapshot(conn)
        await replay(conn, MessagesProjector())
        assert await snapshot(conn) == live
