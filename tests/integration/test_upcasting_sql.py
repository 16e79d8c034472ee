"""The database reads old events as the code does: `upcast_event` (behind
`current_events`, which every SQL fold reads) agrees with `domain.upcasting`,
and an event neither knows stops the folds instead of being folded wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg.types.json import Jsonb
from uuid_utils.compat import uuid7

from commands.event_store import read_stream
from domain.access import ApiKeyCreated
from domain.events import EVENT_TYPES, Event, MediaAttached, SmsProcessed, SmsReceived, stream_of
from domain.upcasting import FORMAT_OF, STEPS, UnknownEventVersion, upcast
from projections.catalog import projectors, read_models
from projections.fold import SqlFold
from projections.log import START, range_params
from projections.runner import catch_up, checkpoint_of, ensure_checkpoints
from tests.support.postgres import Databases
from tests.support.streams import a_message
from tests.support.versions import as_version_1, as_written, write_stored

AT = datetime(2026, 11, 24, 10, 15, 2, 123000, tzinfo=UTC)
MESSAGE = uuid7()
CURRENT: list[Event] = [
    SmsReceived(
        message_id=MESSAGE, from_="+447700900123", to="+33612345678", message="Hi", received_at=AT
    ),
    SmsProcessed(
        message_id=MESSAGE,
        encoding="UCS-2",
        segments=2,
        from_region="GB",
        to_region=None,
        processed_at=AT,
    ),
    MediaAttached(
        message_id=MESSAGE,
        sha256="cd" * 32,
        content_type="image/jpeg",
        format="MPO",
        size=99,
        width=3,
        height=2,
        attached_at=AT,
    ),
]

# Data of every older version some step reads, as that version wrote it.
OLDER: dict[tuple[str, int], list[dict[str, Any]]] = {
    (ApiKeyCreated.TYPE, 1): [
        {
            "key_id": "abcdefabcdef",
            "name": "",
            "scopes": ["read"],
            "actor": "migration",
            "created_at": "2026-11-24T10:15:02.123Z",
        }
    ],
    (MediaAttached.TYPE, 1): [
        as_version_1(
            MediaAttached(
                message_id=MESSAGE,
                sha256=f"{n:064x}",
                content_type=content_type,
                format=image_format,
                size=10 + n,
                width=4,
                height=3,
                attached_at=AT,
            )
        )
        for n, (content_type, image_format) in enumerate(sorted(FORMAT_OF.items()))
    ],
}


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
        yield c


async def upcast_in_sql(
    conn: psycopg.AsyncConnection[Any], event_type: str, version: int, data: dict[str, Any]
) -> Any:
    cur = await conn.execute(
        "SELECT upcast_event(%s, %s::smallint, %s)", (event_type, version, Jsonb(data))
    )
    row = await cur.fetchone()
    assert row is not None
    return row[0]


def test_every_step_has_data_of_its_version_here() -> None:
    assert set(OLDER) == set(STEPS)


def test_every_type_is_here_in_its_current_version() -> None:
    assert {type(e) for e in CURRENT} == set(EVENT_TYPES.values())


async def test_the_database_reads_each_older_version_as_the_code_does(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    for (event_type, version), samples in OLDER.items():
        for data in samples:
            assert await upcast_in_sql(conn, event_type, version, data) == upcast(
                event_type, version, data
            )


@pytest.mark.parametrize("event", CURRENT, ids=lambda e: e.TYPE)
async def test_the_current_version_reads_unchanged(
    conn: psycopg.AsyncConnection[Any], event: Event
) -> None:
    data = as_written(event)
    assert await upcast_in_sql(conn, event.TYPE, event.SCHEMA_VERSION, data) == data


@pytest.mark.parametrize("kind", EVENT_TYPES.values(), ids=lambda k: k.TYPE)
async def test_a_version_the_database_has_no_step_for_is_an_error(
    conn: psycopg.AsyncConnection[Any], kind: type[Event]
) -> None:
    newer = kind.SCHEMA_VERSION + 1
    with pytest.raises(
        psycopg.errors.DataException, match=f"cannot read {kind.TYPE} version {newer}"
    ):
        await upcast_in_sql(conn, kind.TYPE, newer, {})


async def test_a_version_1_image_of_a_content_type_with_no_format_is_an_error(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    data = {**OLDER[(MediaAttached.TYPE, 1)][0], "content_type": "image/bmp"}
    with pytest.raises(psycopg.errors.DataException, match="no format for content type image/bmp"):
        await upcast_in_sql(conn, MediaAttached.TYPE, 1, data)


async def test_an_event_of_an_unknown_version_stops_every_follower_of_the_log(
    databases: Databases,
) -> None:
    """Every projector fails its batch and keeps its checkpoint (and so retries
    once the code and the database know the version), and decoding refuses it."""
    async with await psycopg.AsyncConnection.connect(databases.create(), autocommit=True) as conn:
        message_id = await a_message(conn)
        stream = stream_of(message_id)
        newer = MediaAttached.SCHEMA_VERSION + 1
        data = as_written(CURRENT[2]) | {"message_id": str(message_id), "colour": "red"}
        await write_stored(conn, stream, 2, MediaAttached.TYPE, newer, data)

        followers = projectors()
        await ensure_checkpoints(conn, [p.name for p in followers])
        for follower in followers:
            with pytest.raises(
                (psycopg.errors.DataException, UnknownEventVersion),
                match=f"cannot read MediaAttached version {newer}",
            ):
                await catch_up(conn, follower)
            assert await checkpoint_of(conn, follower.name) == START
        recorded = await read_stream(conn, stream)
        assert recorded[0].decode() == msgspec.json.decode(recorded[0].data, type=SmsReceived)
        with pytest.raises(UnknownEventVersion, match=f"MediaAttached version {newer}"):
            recorded[1].decode()


def upcasting_copies(conn: psycopg.Connection[Any], statement: bytes, params: Any) -> int:
    """How many copies of the upcasting expression the statement's plan holds."""
    rows = conn.execute(b"EXPLAIN (VERBOSE) " + statement, params).fetchall()
    return sum(str(row[0]).count("unreadable_event(") for row in rows)


@pytest.mark.parametrize("fold", list(read_models().values()), ids=list(read_models()))
def test_a_fold_upcasts_each_event_it_reads_once(databases: Databases, fold: SqlFold) -> None:
    """`upcast_event` is inlined where `current_events.data` is named: each
    mention is a copy of the expression that PostgreSQL plans on each batch
    (0.1-0.3 ms each) and computes for each event. A fold names it once for
    each read of the view (the media fold had eight copies, the messages fold
    seven)."""
    with psycopg.connect(databases.create()) as conn:
        one = upcasting_copies(conn, b"SELECT data FROM current_events", None)
        assert one >= 1
        statement = fold.statement({table: table for table in fold.tables}).as_bytes(conn)
        reads = fold.template.count("{events}")
        params = {**range_params(START, START), **fold.params}
        assert upcasting_copies(conn, statement, params) == one * reads
