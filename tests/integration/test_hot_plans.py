"""No statement on a request or projector path reads a growing table end to end.

Each hot path of the service runs once on a connection that records its
statements; each statement is then prepared as psycopg prepares it and
explained as a generic plan (what a prepared statement ends up reusing), on
tables as a new deployment starts them and on tables of a busy service's
size, each first before any statistics exist (until autovacuum first comes
by) and then analysed. A sequential scan of any table that grows with the
messages stored, or with the rate sustained, fails the test: its cost would
grow with every request.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg import sql
from uuid_utils.compat import uuid7

from commands.attach_media import attach_media
from commands.housekeeping import prune
from commands.receive_sms import IdempotencyKey, ReceiveRequest, receive_batch
from domain.commands import AttachMedia, Image, ReceiveSms
from domain.events import EventMetadata
from projections.catalog import projectors
from projections.counters import read_counters
from projections.lag import read_health
from projections.log import read_after
from projections.media import get_blob, media_of
from projections.messages import get_message, list_messages
from projections.runner import checkpoint_of, ensure_checkpoints, step
from tests.support.phones import random_phone
from tests.support.plans import (
    Recording,
    Statement,
    custom_plan,
    generic_plan,
    nested_plans,
    nodes,
    seq_scans,
)
from tests.support.postgres import Databases

GROWING = (
    "events",
    "sender_window",
    "idempotency_keys",
    "sms_messages",
    "message_media",
    "media_blobs",
)
WINDOW_AGE_INDEX = "sender_window_received_at_idx"

# Two sizes. A prepared statement keeps its plan until the table's statistics
# change, so the plan made while a new deployment's tables are still small and
# without statistics is the one it may run for its first minutes, whatever
# they grow to meanwhile; then the tables a busy service keeps (a sustained
# 2,000 messages/s keeps 240,000 rows in the window).
SIZES = {
    "starting": {"messages": 500, "window": 1_000, "keys": 1_000, "media": 1_000},
    "realistic": {"messages": 150_000, "window": 240_000, "keys": 100_000, "media": 20_000},
}

# Deterministic, increasing ids: rows go in at the end of each index, which
# keeps the fill to a few seconds. The window's rows span the minute before
# their own statement (not before the fill's transaction began): none comes
# near the two minutes at which the hot paths' prune deletes while the tests
# run, so the table keeps its size. The events are placed and hashed by the
# fill itself, with the chain's trigger off: a plan does not depend on the
# hashes, and hashing 300,000 events one by one took most of the fill's time.
# Each message's documents are built once, for both its events (building
# jsonb was most of what was left); a hash is 64 hex digits made of the
# event's number, as wide as a SHA-256 and as distinct, for a fraction of two
# md5 calls per row.
_EVENTS = (
    "ALTER TABLE events DISABLE TRIGGER events_fill",
    """
INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata,
                    position, tx_id, recorded_at, hash)
SELECT 'sms-' || m.id, v.version, (m.hex || lpad(to_hex(v.version), 16, '0'))::uuid, v.type, 1,
       v.data, m.metadata, nextval('events_position_seq'), pg_current_xact_id(), m.at,
       m.hex || lpad(to_hex(v.version), 48, '0')
FROM (SELECT id, hex, at,
             jsonb_build_object('message_id', id, 'from', sender, 'to', '+447911123456',
                                'message', 'Hello', 'received_at', at) AS received,
             jsonb_build_object('message_id', id, 'processed_at', at, 'encoding', 'GSM-7',
                                'segments', 1, 'from_region', 'US', 'to_region', 'GB') AS processed,
             jsonb_build_object('correlation_id', id, 'causation_id', id, 'actor', 'seed')
                 AS metadata
      FROM (SELECT lpad(to_hex(i), 32, '0')::uuid AS id, lpad(to_hex(i), 16, '0') AS hex,
                   '+1202' || lpad((i %% 50000)::text, 7, '0') AS sender,
                   now() - interval '1 day' + i * interval '10 ms' AS at
            FROM generate_series(1, %(messages)s) AS i) AS g
      -- Not pulled up into the join: built once per message, not once per event.
      OFFSET 0) AS m
CROSS JOIN LATERAL (VALUES (1, 'SmsReceived', m.received),
                           (2, 'SmsProcessed', m.processed)) AS v (version, type, data)
""",
    "ALTER TABLE events ENABLE TRIGGER events_fill",
)
_READ_MODELS = (
    """
INSERT INTO sms_messages (id, "from", "to", message, received_at, status)
SELECT lpad(to_hex(i), 32, '0')::uuid, '+1202' || lpad((i %% 50000)::text, 7, '0'),
       '+447911123456', 'Hello', now() - interval '1 day' + i * interval '10 ms', 'processed'
FROM generate_series(1, %(messages)s) AS i
""",
    """
INSERT INTO sender_window (sender, received_at, message_id, recipient, text)
SELECT '+1303' || lpad(i::text, 7, '0'),
       statement_timestamp() - %(window)s * interval '0.25 ms' + i * interval '0.25 ms',
       lpad(to_hex(i), 32, '0')::uuid, '+447911123456', 'Hello'
FROM generate_series(1, %(window)s) AS i
""",
    """
INSERT INTO idempotency_keys (actor, key, request_hash, outcome, message_id, created_at)
SELECT 'anonymous', 'key-' || lpad(i::text, 8, '0'), '\\x00', 'new',
       lpad(to_hex(i), 32, '0')::uuid, now() - %(keys)s * interval '100 ms' + i * interval '100 ms'
FROM generate_series(1, %(keys)s) AS i
""",
    """
INSERT INTO media_blobs (sha256, content_type, format, size, width, height)
SELECT lpad(to_hex(i), 64, '0'), 'image/png', 'PNG', 1234, 64, 64
FROM generate_series(1, %(media)s) AS i
""",
    """
INSERT INTO message_media (message_id, stream_version, sha256, attached_at)
SELECT lpad(to_hex(i), 32, '0')::uuid, 3, lpad(to_hex(i), 64, '0'), now()
FROM generate_series(1, %(media)s) AS i
""",
)


def fill(url: str, statements: tuple[str, ...], size: dict[str, int]) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for statement in statements:
            conn.execute(statement, size)


@pytest.fixture(scope="module", params=list(SIZES))
def filled(request: pytest.FixtureRequest, databases: Databases) -> tuple[str, str]:
    url = databases.create()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in GROWING:
            # The state before autovacuum first comes by is the first one tested.
            conn.execute(
                sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = off)").format(
                    sql.Identifier(table)
                )
            )
    # The events and the read models share no row: filled at once, on a
    # connection each, the read models go in while the events do (the events
    # alone are about 60 % of the work).
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = [
            pool.submit(fill, url, part, SIZES[request.param]) for part in (_EVENTS, _READ_MODELS)
        ]
        for part in parts:
            part.result()
    return request.param, url


def metadata() -> EventMetadata:
    command = uuid7()
    return EventMetadata(correlation_id=command, causation_id=command)


def request(sender: str, key: str | None) -> ReceiveRequest:
    command = ReceiveSms.create(uuid7(), sender, "+447911123456", "Hello")
    idempotency = None if key is None else IdempotencyKey("anonymous", key, b"body")
    return ReceiveRequest(command, metadata(), idempotency)


async def hot_paths(url: str) -> list[tuple[str, Statement, Any, bool]]:
    """Every statement the hot paths run, once each, with the parameters they ran with."""
    conn = await Recording.connect(url, autocommit=True)
    conn.statements = []
    async with conn:
        a_sender = random_phone()
        batch = [request(a_sender, str(uuid7())), request(random_phone(), None)]
        await receive_batch(conn, [*batch, request(a_sender, "key-00000001")])
        # A batch without keys reads its windows by a statement of its own.
        await receive_batch(conn, [request(random_phone(), None)])
        message_id = batch[0].command.message_id
        image = Image(
            sha256=f"{uuid7().int:064x}",
            content_type="image/png",
            format="PNG",
            size=9,
            width=3,
            height=3,
        )
        await attach_media(conn, AttachMedia(message_id=message_id, images=(image,)), metadata())
        await ensure_checkpoints(conn, [p.name for p in projectors()])
        for projector in projectors():
            await checkpoint_of(conn, projector.name)
            assert await step(conn, projector, 1000)
        await get_message(conn, message_id)
        await get_message(conn, UUID(int=7))
        await list_messages(conn)
        await list_messages(conn, from_=a_sender)
        await list_messages(conn, to="+447911123456")
        await list_messages(conn, status="processed", offset=5000)
        await media_of(conn, message_id)
        await get_blob(conn, image.sha256)
        await read_counters(conn)
        await read_health(conn)
        await read_after(conn, 1000, 100)
        await read_after(conn, 1000, 100, event_type="SmsProcessed")
        await prune(conn)
        seen: dict[str, tuple[str, Statement, Any, bool]] = {}
        for statement, params, prepared in conn.statements:
            text = statement.as_string(conn) if isinstance(statement, sql.Composable) else statement
            text = text.decode() if isinstance(text, bytes) else text
            words = text.split()
            seen.setdefault(" ".join(words), (" ".join(words)[:100], statement, params, prepared))
    return list(seen.values())


# The gate of a batch's write, alone: the window check runs its own statements,
# planned and kept inside the server.
_GATE = (
    "SELECT senders_unchanged(%s::text[], %s::bigint, %s::uuid[], clock_timestamp(),"
    " %s::interval, %s::interval)"
)


def gate_plans(conn: psycopg.Connection[Any], accept: tuple[str, Statement, Any, bool]) -> Any:
    """The plans of the window check's statements, as the batch's write ran it,
    for its senders' windows as they are now (so that it passes)."""
    senders, seed, _, _, span, fresh = accept[2][:6]
    seen = [
        row[0]
        for row in conn.execute(
            "SELECT message_id FROM sender_window WHERE sender = ANY(%s)", (senders,)
        )
    ]
    assert senders
    assert seen
    return nested_plans(conn, _GATE, (senders, seed, seen, span, fresh))


def test_no_hot_statement_reads_a_growing_table_end_to_end(filled: tuple[str, str]) -> None:
    size, url = filled
    statements = asyncio.run(hot_paths(url))
    [accept] = [s for s in statements if s[0].startswith("WITH gate AS")]
    if size == "starting":
        # A statement that is never prepared is planned anew each time, for the
        # table as it is then: only a kept plan carries a small table's choice on.
        statements = [s for s in statements if s[3]]
    assert len(statements) >= 25
    failures = []
    with psycopg.connect(url, autocommit=True) as conn:
        for statistics in ("before any statistics", "analysed"):
            if statistics == "analysed":
                conn.execute("ANALYZE")
            plans = [
                (name, (generic_plan if prepared else custom_plan)(conn, statement, params))
                for name, statement, params, prepared in statements
            ]
            gate = gate_plans(conn, accept)
            assert any("sender_window" in text for text, _ in gate)
            for name, plan in [*plans, *((" ".join(text.split())[:100], p) for text, p in gate)]:
                scanned = [t for t in seq_scans(plan) if t in GROWING]
                if scanned:
                    failures.append(f"{statistics}: Seq Scan on {', '.join(scanned)}: {name}")
                # Led by the age index pruning uses, a read of the window would go
                # through every sender's last minute for each sender it asks for.
                by_age = {n.get("Index Name") for n in nodes(plan)} & {WINDOW_AGE_INDEX}
                if by_age and not name.startswith("DELETE"):
                    failures.append(f"{statistics}: {WINDOW_AGE_INDEX} read: {name}")
    assert not failures, "\n".join(failures)


# Runs of each statement on one connection: psycopg prepares a statement at
# its sixth run, and PostgreSQL then makes five plans for the values given
# before it weighs the generic plan against them.
RUNS = 20


async def plans_kept(url: str) -> list[tuple[str, int, int]]:
    """Each statement the request path prepares, run RUNS times on one
    connection: its text, custom plans made, generic plans used."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute('SELECT "from", id FROM sms_messages LIMIT 1')
        row = await cur.fetchone()
        assert row is not None
        sender, message_id = row
        for _ in range(RUNS):
            await list_messages(conn, limit=11)
            await list_messages(conn, from_=sender, limit=11)
            await list_messages(conn, to="+447911123456", limit=11)
            # One status: a rare one (`stored`) asked in turn with a common one
            # gets plans of its own, which PostgreSQL finds cheaper for it than
            # the generic plan by more than their planning costs.
            await list_messages(conn, status="processed", limit=11)
            await get_message(conn, message_id)
        cur = await conn.execute(
            "SELECT statement, custom_plans, generic_plans FROM pg_prepared_statements",
            prepare=False,
        )
        return [
            (" ".join(text.split())[:120], custom, generic) async for text, custom, generic in cur
        ]


def test_the_request_path_keeps_one_plan(filled: tuple[str, str]) -> None:
    """Planning a statement can cost PostgreSQL more than running it (0.07-0.15
    ms against 0.04-0.07 for a first page): no statement of the request path is
    planned anew on every run once prepared, at either size. (The projectors'
    lease is planned on each run on purpose: tests/integration/test_lease.py.)"""
    kept = asyncio.run(plans_kept(filled[1]))
    assert len(kept) >= 5
    replanned = [k for k in kept if k[1] > 5 or k[2] == 0]
    assert not replanned, "\n".join(f"{c} custom, {g} generic: {t}" for t, c, g in replanned)


def test_a_sequential_scan_is_seen(filled: tuple[str, str]) -> None:
    _, url = filled
    with psycopg.connect(url, autocommit=True) as conn:
        plan = generic_plan(
            conn, "SELECT * FROM sender_window WHERE recipient = %s", ("+447911123456",)
        )
    assert seq_scans(plan) == ["sender_window"]


def test_the_tables_are_of_the_size_asked(filled: tuple[str, str]) -> None:
    size, url = filled
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM sms_messages), (SELECT count(*) FROM sender_window)"
        ).fetchone()
    # The hot paths added a message or two.
    assert row is not None
    assert row[0] >= SIZES[size]["messages"]
    assert row[1] >= SIZES[size]["window"]
