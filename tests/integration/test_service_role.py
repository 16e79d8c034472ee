"""The service's own role can do its work and cannot change the log."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import errors, sql
from uuid_utils.compat import uuid7

from commands.event_store import Append, append
from commands.handler import Namespace, lock
from domain.events import EventMetadata, SmsReceived, stream_of
from migrations import migrate
from projections.catalog import projectors, read_models
from projections.replay import replay
from projections.runner import catch_up
from tests.support.phones import random_phone
from tests.support.postgres import Databases


@pytest.fixture(scope="module")
def url(databases: Databases) -> str:
    # The migrations make the role and grant it what it needs.
    return databases.create()


async def as_service(url: str) -> psycopg.AsyncConnection:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute("SET ROLE smsq_service")
    return conn


async def test_the_service_role_appends_folds_and_reads(url: str) -> None:
    event = SmsReceived(
        message_id=uuid7(),
        from_=random_phone(),
        to="+447911123456",
        message="least privilege",
        received_at=datetime.now(UTC),
    )
    command = uuid7()
    meta = EventMetadata(correlation_id=command, causation_id=command)
    async with await as_service(url) as conn:
        await append(conn, [Append(stream_of(event.message_id), 0, [event], meta)])
        # Until nothing moves: processing appends events the read models then fold.
        while sum([await catch_up(conn, projector) for projector in projectors()]):
            pass
        cur = await conn.execute(
            "SELECT status FROM sms_messages WHERE id = %s", (event.message_id,)
        )
        assert await cur.fetchone() == ("processed",)
        cur = await conn.execute("SELECT processed FROM message_counters")
        assert await cur.fetchone() == (1,)


async def test_the_service_role_locks_every_key_once(url: str) -> None:
    keys = ["+15550001", "+15550002", "+15550001", "+15550003"]
    async with await as_service(url) as conn, conn.transaction():
        await lock(conn, Namespace.SENDER, keys)
        # An advisory lock on a bigint shows its high and low halves.
        cur = await conn.execute(
            "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
        )
        held = sorted(k for (k,) in await cur.fetchall())
        cur = await conn.execute(
            "SELECT DISTINCT hashtextextended(k, %s) FROM unnest(%s::text[]) AS k ORDER BY 1",
            (int(Namespace.SENDER), keys),
        )
        assert held == [k for (k,) in await cur.fetchall()]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'x'",
        "DELETE FROM events",
        "TRUNCATE events",
        "INSERT INTO api_keys (id, scopes, token_sha256) VALUES ('000000000000', '{read}',"
        " decode(repeat('00', 32), 'hex'))",
        "DROP TABLE sms_messages",
    ],
)
async def test_the_service_role_cannot_change_the_log_keys_or_schema(
    url: str, statement: str
) -> None:
    async with await as_service(url) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            await conn.execute(statement.encode())


def test_starting_as_the_service_role_finds_the_schema_current(url: str) -> None:
    # `smsq serve` migrates at start: with nothing pending, the service role may.
    service_url = psycopg.conninfo.make_conninfo(url, options="-c role=smsq_service")
    with psycopg.connect(service_url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("smsq_service",)
    assert migrate(service_url) == []


async def test_a_replay_keeps_the_service_roles_grants(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as owner:
        for model in read_models().values():
            await replay(owner, model)
    async with await as_service(url) as conn:
        for table in ("sms_messages", "message_counters", "message_media", "media_blobs"):
            await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        while sum([await catch_up(conn, projector) for projector in projectors()]):
            pass
        with pytest.raises(errors.InsufficientPrivilege):
            await conn.execute("DELETE FROM sms_messages")
