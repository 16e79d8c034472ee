"""The media read model: folded live, rebuilt by replay to the same rows."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from uuid_utils.compat import uuid7

from domain.commands import Image
from projections.media import MediaProjector, media_of
from projections.messages import MessagesProjector
from projections.replay import replay
from projections.runner import catch_up
from tests.support.postgres import Databases
from tests.support.seed import seed_messages
from tests.support.streams import a_message, attach

SHARED = [
    Image(sha256=f"{n:064x}", content_type="image/webp", format="WEBP", size=n, width=n, height=2)
    for n in range(1, 9)
]


@pytest.fixture(scope="module")
def seeded_url(databases: Databases) -> str:
    url = databases.create()
    seed_messages(url, 3000, processed=0.8, media=0.3)
    return url


@pytest.fixture
async def conn(seeded_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(seeded_url, autocommit=True) as c:
        yield c


async def snapshot(conn: psycopg.AsyncConnection[Any]) -> tuple[list[Any], list[Any]]:
    links = await conn.execute("SELECT * FROM message_media ORDER BY message_id, stream_version")
    blobs = await conn.execute("SELECT * FROM media_blobs ORDER BY sha256")
    return await links.fetchall(), await blobs.fetchall()


async def test_the_model_answers_once_it_has_folded_the_stream(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    message_id = await a_message(conn)
    await attach(conn, message_id, SHARED[2], SHARED[0])
    behind = await media_of(conn, message_id)
    assert behind is not None
    assert behind.rows is None  # not folded yet: the stream answers
    assert [r.version for r in behind.stream] == [1, 2, 3]
    assert behind.place == behind.stream[-1].place

    await catch_up(conn, MediaProjector())
    folded = await media_of(conn, message_id)
    assert folded is not None
    assert folded.rows is not None
    assert [r.sha256 for r in folded.rows] == [SHARED[2].sha256, SHARED[0].sha256]
    assert folded.rows[0].content_type == "image/webp"
    assert folded.place == behind.place

    await attach(conn, message_id, SHARED[1])
    again = await media_of(conn, message_id)
    assert again is not None
    assert again.rows is None  # one event behind again
    assert again.place > folded.place
    assert await media_of(conn, uuid7()) is None  # no such message


async def test_replay_rebuilds_the_same_rows_as_the_live_fold(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    rng = random.Random(5)
    for _ in range(40):  # images shared between messages, attached in several uploads
        message_id = await a_message(conn)
        await attach(conn, message_id, *rng.sample(SHARED, 3))
        await attach(conn, message_id, *rng.sample(SHARED, 2))
    # Small batches: a message's events are often split over several of them.
    await catch_up(conn, MediaProjector(), batch_size=37)
    incremental = await snapshot(conn)
    links, blobs = incremental
    assert len(links) > 500
    assert {b[0] for b in blobs} >= {i.sha256 for i in SHARED}

    await replay(conn, MediaProjector(), chunk=500)
    assert await snapshot(conn) == incremental
    await replay(conn, MediaProjector(), chunk=2000)
    assert await snapshot(conn) == incremental
    cur = await conn.execute(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE ANY(ARRAY[%s, %s])",
        ("message_media\\_\\_%", "media\\_blobs\\_\\_%"),
    )
    assert await cur.fetchone() == (0,)  # no shadow or retired table left behind


async def test_media_count_agrees_with_the_links(conn: psycopg.AsyncConnection[Any]) -> None:
    await catch_up(conn, MessagesProjector(), batch_size=101)
    await catch_up(conn, MediaProjector(), batch_size=101)
    cur = await conn.execute(
        "SELECT count(*) FROM sms_messages AS s WHERE s.media_count"
        " <> (SELECT count(*) FROM message_media AS m WHERE m.message_id = s.id)"
    )
    assert await cur.fetchone() == (0,)
    cur = await conn.execute("SELECT sum(media_count) FROM sms_messages")
    total = await cur.fetchone()
    assert total is not None
    assert total[0] > 500
