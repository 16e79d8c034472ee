"""Making and revoking keys are events of the stream `access`, written with the row."""

from __future__ import annotations

import json

import psycopg
import pytest

from api.cli.support import as_role
from api.runtime.keys import CHANNEL, create_key, revoke_key
from domain.key_limits import KeyRate
from migrations import available, migrate
from projections.verify import verify
from tests.support.postgres import Databases


@pytest.fixture
def url(databases: Databases) -> str:
    return databases.create()


def access_events(url: str) -> list[tuple[str, dict, dict]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT type, data, metadata FROM events WHERE stream_id = 'access' ORDER BY version"
        ).fetchall()
    return [(t, d, m) for t, d, m in rows]


def audit(url: str) -> list[str]:
    return verify(as_role(url, "smsq_auditor")).faults


async def test_making_and_revoking_a_key_appends_its_events_and_never_the_secret(
    url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        issued = await create_key(conn, ["read", "audit"], "auditor", actor="operator:alice")
        assert (await revoke_key(conn, issued.key.id, actor="operator:bob")) is not None
        # Revoking again changes nothing and records nothing.
        assert (await revoke_key(conn, issued.key.id, actor="operator:bob")) is not None
        assert await revoke_key(conn, "000000000000") is None
    (created, data, meta), (revoked, rdata, rmeta) = access_events(url)
    assert (created, revoked) == ("ApiKeyCreated", "ApiKeyRevoked")
    assert data["key_id"] == rdata["key_id"] == issued.key.id
    assert data["scopes"] == ["read", "audit"]
    assert (data["actor"], meta["actor"]) == ("operator:alice", "operator:alice")
    assert (rdata["actor"], rmeta["actor"]) == ("operator:bob", "operator:bob")
    secret = issued.token.rsplit("_", 1)[1]
    assert secret not in json.dumps([data, meta, rdata, rmeta])
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = %s", (issued.key.id,)
        ).fetchone()
    assert row == (True,)
    assert audit(url) == []


@pytest.mark.parametrize(
    ("edit", "fault"),
    [
        ("UPDATE api_keys SET revoked_at = NULL", "its events say revoked, its row does not"),
        ("UPDATE api_keys SET scopes = '{read,write,audit,metrics}'", "its row's scopes"),
        ("DELETE FROM api_keys", "made by its events, but its row is gone"),
        ("UPDATE api_keys SET rate_per_second = 1000", "its row's limits are not its events'"),
        ("UPDATE api_keys SET senders = '{}'", "its row's limits are not its events'"),
    ],
)
async def test_verify_reports_a_key_row_that_disagrees_with_its_events(
    url: str, edit: str, fault: str
) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        issued = await create_key(conn, ["read"], rate=KeyRate(5), senders=["+14155550100"])
        await revoke_key(conn, issued.key.id)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(edit.encode())
    assert [f for f in audit(url) if f.startswith(f"key {issued.key.id}: {fault}")]


async def test_a_keys_limits_are_in_its_event_and_its_row_and_it_is_announced(
    url: str,
) -> None:
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
    ):
        await listener.execute(f"LISTEN {CHANNEL}")
        issued = await create_key(
            conn, ["write"], rate=KeyRate(2.5), senders=["+14155550100", "+447911123456"]
        )
        await revoke_key(conn, issued.key.id)
        told = []
        async for note in listener.notifies(timeout=5, stop_after=2):
            told.append(note.payload)
    assert told == [issued.key.id, issued.key.id]
    assert (issued.key.rate, issued.key.senders) == (
        KeyRate(2.5),
        ("+14155550100", "+447911123456"),
    )
    (_, data, _), _ = access_events(url)
    assert (data["rate_per_second"], data["senders"]) == (2.5, ["+14155550100", "+447911123456"])
    assert audit(url) == []


async def test_verify_reports_a_key_row_made_without_its_event(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO api_keys (id, scopes, token_sha256)"
            " VALUES ('abcdefabcdef', '{read,write}', decode(repeat('00', 32), 'hex'))"
        )
    assert audit(url) == ["key abcdefabcdef: its row has no ApiKeyCreated event"]


async def test_keys_made_before_access_events_get_theirs_at_migration(
    databases: Databases,
) -> None:
    migrations = available()
    backfill = next(i for i, m in enumerate(migrations) if "ApiKeyCreated" in m.sql)
    url = databases.create()
    with psycopg.connect(databases.admin_url, autocommit=True) as conn:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    migrate(url, migrations=migrations[:backfill])
    with psycopg.connect(url, autocommit=True) as conn:
        for key_id, revoked in (("aaaaaaaaaaaa", False), ("bbbbbbbbbbbb", True)):
            conn.execute(
                "INSERT INTO api_keys (id, scopes, token_sha256, revoked_at) VALUES"
                " (%s, '{read}', decode(repeat('00', 32), 'hex'),"
                " CASE WHEN %s THEN clock_timestamp() END)",
                (key_id, revoked),
            )
    migrate(url)
    types = [(t, d["key_id"]) for t, d, _ in access_events(url)]
    assert sorted(types) == [
        ("ApiKeyCreated", "aaaaaaaaaaaa"),
        ("ApiKeyCreated", "bbbbbbbbbbbb"),
        ("ApiKeyRevoked", "bbbbbbbbbbbb"),
    ]
    assert audit(url) == []
