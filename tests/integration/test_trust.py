"""The log an auditor can trust: who may write what, the hash chain, the seals,
and `verify` finding each kind of tampering by a superuser."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import errors

from api.cli.support import as_role
from commands.event_store import Append, append
from domain.events import EventMetadata
from migrations import available, migrate
from projections.chain import SealBody, event_hash
from projections.runner import catch_up
from projections.sealer import Sealer
from projections.verify import PARTS_PER_PROCESS, _split, verify
from projections.verify_part import Part
from tests.support.postgres import Databases, unique_name
from tests.support.seed import attached, seed_messages

KEY = Ed25519PrivateKey.generate()
MESSAGES = 300  # about 600 events in 300 streams
SEAL_BATCH = 150
PART_EVENTS = 20  # for the test of parts side by side: a part of a few seals


async def seal(url: str, batch: int = SEAL_BATCH) -> int:
    async with await psycopg.AsyncConnection.connect(
        as_role(url, "smsq_service"), autocommit=True
    ) as conn:
        return await catch_up(conn, Sealer(KEY), batch)


@pytest.fixture
async def sealed(databases: Databases) -> str:
    """A database of its own: a log of a few hundred events, sealed in several seals."""
    url = databases.create()
    seed_messages(url, MESSAGES)
    await seal(url)
    return url


def audit(url: str, **kwargs: Any) -> list[str]:
    return verify(as_role(url, "smsq_auditor"), **kwargs).faults


def tamper(url: str, *statements: str, params: Any = None) -> None:
    """As the superuser, with every trigger off (the append-only ones too)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement.encode(), params)


def one(url: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query.encode(), params).fetchone()
    assert row is not None
    return row


# --- who may write what -----------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET data = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "INSERT INTO events (position, stream_id, version, event_id, type, data)"
        " VALUES (1, 'x', 1, gen_random_uuid(), 'SmsReceived', '{}')",
        "INSERT INTO events (recorded_at, stream_id, version, event_id, type, data)"
        " VALUES ('2020-01-01', 'x', 1, gen_random_uuid(), 'SmsReceived', '{}')",
        "INSERT INTO events (tx_id, stream_id, version, event_id, type, data)"
        " VALUES ('1', 'x', 1, gen_random_uuid(), 'SmsReceived', '{}')",
        "INSERT INTO events (hash, stream_id, version, event_id, type, data)"
        " VALUES (repeat('0', 64), 'x', 1, gen_random_uuid(), 'SmsReceived', '{}')",
        "UPDATE seals SET signature = ''",
        "DELETE FROM seals",
        "SET session_replication_role = replica",
    ],
)
def test_the_service_role_cannot_change_the_log_or_place_an_event(
    sealed: str, statement: str
) -> None:
    with (
        psycopg.connect(as_role(sealed, "smsq_service"), autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute(statement.encode())


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO events (stream_id, version, event_id, type, data)"
        " VALUES ('x', 1, gen_random_uuid(), 'SmsReceived', '{}')",
        "INSERT INTO seals SELECT * FROM seals LIMIT 1",
        "INSERT INTO seal_keys VALUES (repeat('0', 64), 'k')",
        "UPDATE projection_checkpoints SET position = 0",
        "SELECT * FROM sms_messages",
        "SELECT token_sha256 FROM api_keys",
    ],
)
def test_the_auditor_reads_and_writes_nothing(sealed: str, statement: str) -> None:
    with (
        psycopg.connect(as_role(sealed, "smsq_auditor"), autocommit=True) as conn,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        conn.execute(statement.encode())


def test_the_database_places_every_event_whatever_the_insert_says(sealed: str) -> None:
    # Even the owner, naming every column: the trigger has the last word.
    with psycopg.connect(sealed, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO events (position, recorded_at, tx_id, hash, stream_id, version,"
            " event_id, type, data) VALUES (1, '2020-01-01', '1', repeat('0', 64), 'forged', 1,"
            " gen_random_uuid(), 'SmsReceived', '{}')"
            " RETURNING position, recorded_at > '2025-01-01', tx_id = pg_current_xact_id(), hash,"
            " (SELECT max(position) FROM events WHERE stream_id <> 'forged')"
        ).fetchone()
    assert row is not None
    position, recent, current_tx, hash_, before = row
    assert position > before
    assert recent
    assert current_tx
    assert hash_ != "0" * 64


# --- the chain --------------------------------------------------------------


def test_each_hash_covers_the_stored_columns_and_the_streams_previous_hash(sealed: str) -> None:
    with psycopg.connect(sealed, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT e.position, e.tx_id::text, e.stream_id, e.version, e.event_id::text, e.type,"
            " e.schema_version, e.data::text, e.metadata::text,"
            " (extract(epoch FROM e.recorded_at) * 1000000)::bigint, e.hash,"
            " coalesce(p.hash, '')"
            " FROM events e LEFT JOIN events p"
            " ON p.stream_id = e.stream_id AND p.version = e.version - 1"
            " ORDER BY e.position LIMIT 50"
        ).fetchall()
    assert any(r[3] > 1 for r in rows)
    for *columns, stored, previous in rows:
        position, tx, stream, version, event_id, type_, schema, data, meta, at = columns
        assert stored == event_hash(
            previous, position, int(tx), stream, version, event_id, type_, schema, data, meta, at
        )


async def test_a_log_hashed_before_the_cheaper_chain_verifies_and_chains_on(
    databases: Databases,
) -> None:
    """The chain's functions were rewritten for speed (the encoding was not):
    events hashed by the old trigger, events appended to the same streams by
    the new one, and the hashes the SQL function computes all agree."""
    url = databases.create_empty(unique_name("smsq_chain"))
    names = [m.name for m in available()]
    cut = next(i for i, name in enumerate(names) if name.endswith("_cheaper_hash_chain"))
    migrate(url, migrations=available()[:cut])
    events = seed_messages(url, 40, processed=0.5)
    migrate(url)
    with psycopg.connect(url) as conn:
        streams = conn.execute(
            "SELECT stream_id, max(version), (array_agg(data ORDER BY version))[1]->>'message_id'"
            " FROM events WHERE stream_id LIKE 'sms-%' GROUP BY stream_id"
        ).fetchall()
    rng = random.Random(5)
    meta = EventMetadata(correlation_id=uuid4(), causation_id=uuid4(), actor="test")
    appends = [
        Append(stream, version, [attached(UUID(message), datetime.now(UTC), rng)], meta)
        for stream, version, message in streams
    ]
    async with (
        await psycopg.AsyncConnection.connect(
            as_role(url, "smsq_service"), autocommit=True
        ) as service,
        service.transaction(),
    ):
        await append(service, appends)
    await seal(url)
    assert audit(url) == []
    assert one(
        url,
        "SELECT count(*) FILTER (WHERE e.hash = event_hash(p.hash, e.position, e.tx_id,"
        " e.stream_id, e.version, e.event_id, e.type, e.schema_version, e.data, e.metadata,"
        " e.recorded_at)), count(*), count(p.hash) FILTER (WHERE e.type = 'MediaAttached')"
        " FROM events e LEFT JOIN events p ON p.stream_id = e.stream_id"
        " AND p.version = e.version - 1",
    ) == (events + 40, events + 40, 40)


# --- verify -----------------------------------------------------------------


async def test_a_clean_sealed_log_verifies_clean_as_the_auditor(sealed: str) -> None:
    report = verify(as_role(sealed, "smsq_auditor"), public_key=KEY.public_key())
    assert report.faults == []
    assert report.events == one(sealed, "SELECT count(*) FROM events")[0]
    assert report.seals == one(sealed, "SELECT count(*) FROM seals")[0] > 1
    assert report.unsealed == 0


async def test_seals_chain_each_range_once_and_only_when_something_is_new(sealed: str) -> None:
    assert await seal(sealed) == 0
    before = one(sealed, "SELECT count(*) FROM seals")[0]
    seed_messages(sealed, 3, seed=99)
    assert await seal(sealed) > 0
    assert one(sealed, "SELECT count(*) FROM seals")[0] == before + 1
    assert audit(sealed) == []


def test_an_edited_payload_is_named_by_its_position(sealed: str) -> None:
    position = one(sealed, "SELECT position FROM events ORDER BY position OFFSET 17 LIMIT 1")[0]
    tamper(
        sealed,
        "UPDATE events SET data = jsonb_set(data, '{message}', '\"edited\"')"
        " WHERE position = %(p)s",
        params={"p": position},
    )
    assert f"position {position}: the hash does not match the event's contents" in audit(sealed)


def test_edited_metadata_is_named_by_its_position(sealed: str) -> None:
    position = one(sealed, "SELECT position FROM events ORDER BY position OFFSET 5 LIMIT 1")[0]
    tamper(
        sealed,
        'UPDATE events SET metadata = metadata || \'{"actor": "someone else"}\''
        " WHERE position = %(p)s",
        params={"p": position},
    )
    assert f"position {position}: the hash does not match the event's contents" in audit(sealed)


def test_a_deleted_event_is_named_by_its_successor_and_its_seal(sealed: str) -> None:
    gone, after = one(
        sealed,
        "SELECT e.position, n.position FROM events e"
        " JOIN events n ON n.stream_id = e.stream_id AND n.version = e.version + 1"
        " WHERE e.version = 1 ORDER BY e.position LIMIT 1",
    )
    tamper(sealed, "DELETE FROM events WHERE position = %(p)s", params={"p": gone})
    faults = audit(sealed)
    assert f"position {after}: the event before it in its stream (version 1) is missing" in faults
    assert any(f.startswith("seal 1: covers") for f in faults), faults


def test_a_deleted_last_event_of_a_stream_is_named_by_its_seal(sealed: str) -> None:
    gone, number = one(
        sealed,
        "SELECT e.position, s.number FROM events e JOIN seals s"
        " ON (e.tx_id, e.position) > (s.after_tx_id, s.after_position)"
        " AND (e.tx_id, e.position) <= (s.to_tx_id, s.to_position)"
        " WHERE NOT EXISTS (SELECT 1 FROM events n WHERE n.stream_id = e.stream_id"
        " AND n.version > e.version) ORDER BY e.position DESC LIMIT 1",
    )
    tamper(sealed, "DELETE FROM events WHERE position = %(p)s", params={"p": gone})
    assert any(f.startswith(f"seal {number}: covers") for f in audit(sealed))


def test_two_swapped_payloads_are_both_named(sealed: str) -> None:
    a, b = (
        r[0]
        for r in psycopg.connect(sealed)
        .execute("SELECT position FROM events WHERE type = 'SmsReceived' ORDER BY position LIMIT 2")
        .fetchall()
    )
    tamper(
        sealed,
        "UPDATE events AS e SET data = o.data FROM events AS o"
        " WHERE (e.position, o.position) IN ((%(a)s, %(b)s), (%(b)s, %(a)s))",
        params={"a": a, "b": b},
    )
    faults = audit(sealed)
    for position in (a, b):
        assert f"position {position}: the hash does not match the event's contents" in faults


def test_an_event_forged_behind_the_seals_is_named_by_its_seal(sealed: str) -> None:
    # A whole new stream, its hash computed as the database would: the chain
    # alone cannot tell; the seal whose range it was slipped into can.
    # Seal 1 covers the start of the log's first transaction: a position
    # below every real one, in that transaction, falls inside it.
    tx = one(sealed, "SELECT to_tx_id::text FROM seals WHERE number = 1")[0]
    position = 1
    tamper(
        sealed,
        "INSERT INTO events (position, recorded_at, tx_id, stream_id, version, event_id, type,"
        " schema_version, data, metadata, hash)"
        " SELECT %(position)s - 1, '2020-01-01', %(tx)s::xid8, 'forged', 1, e.event_id, e.type,"
        " 1, e.data, e.metadata, event_hash(NULL, %(position)s - 1, %(tx)s::xid8, 'forged', 1,"
        " e.event_id, e.type, 1::int2, e.data, e.metadata, '2020-01-01')"
        " FROM (SELECT gen_random_uuid() AS event_id, type, data, metadata FROM events"
        "       WHERE version = 1 LIMIT 1) AS e",
        params={"position": position, "tx": tx},
    )
    assert one(sealed, "SELECT count(*) FROM events WHERE position = %s", (position - 1,))[0] == 1
    faults = audit(sealed)
    assert any(f.startswith("seal 1: covers") for f in faults), faults
    assert not any(f.startswith("position") for f in faults)


def test_a_rewritten_chain_fails_the_seal_signature(sealed: str) -> None:
    position, stream = one(
        sealed, "SELECT position, stream_id FROM events WHERE version = 1 ORDER BY position LIMIT 1"
    )
    # The edit, then every later hash of its stream, then the seal's digest
    # and hash: everything a superuser can do, short of the private key.
    tamper(
        sealed,
        "UPDATE events SET data = jsonb_set(data, '{message}', '\"rewritten\"')"
        " WHERE position = %(p)s",
        """
        DO $$
        DECLARE e record; previous text;
        BEGIN
          FOR e IN SELECT * FROM events WHERE stream_id = '%s' ORDER BY version LOOP
            previous := event_hash(previous, e.position, e.tx_id, e.stream_id, e.version,
              e.event_id, e.type, e.schema_version, e.data, e.metadata, e.recorded_at);
            UPDATE events SET hash = previous WHERE position = e.position;
          END LOOP;
        END $$
        """.replace("%s", stream)
        .replace("%", "%%")
        .replace("%%(p)s", "%(p)s"),
        params={"p": position},
    )
    number, digest = one(
        sealed,
        "SELECT s.number, encode(sha256(convert_to(string_agg(e.hash, '' ORDER BY e.tx_id,"
        " e.position), 'UTF8')), 'hex') FROM seals s JOIN events e"
        " ON (e.tx_id, e.position) > (s.after_tx_id, s.after_position)"
        " AND (e.tx_id, e.position) <= (s.to_tx_id, s.to_position)"
        " WHERE s.number = (SELECT number FROM seals s2 WHERE (s2.to_tx_id, s2.to_position)"
        "   >= (SELECT tx_id, position FROM events WHERE position = %s)"
        "   ORDER BY number LIMIT 1) GROUP BY s.number",
        (position,),
    )
    row = one(
        sealed,
        "SELECT previous, after_tx_id::text, after_position, to_tx_id::text, to_position,"
        " from_position, events, key_id, (extract(epoch FROM sealed_at) * 1000000)::bigint"
        " FROM seals WHERE number = %s",
        (number,),
    )
    body = SealBody(
        number=number,
        previous=row[0],
        after_tx_id=int(row[1]),
        after_position=row[2],
        to_tx_id=int(row[3]),
        to_position=row[4],
        from_position=row[5],
        events=row[6],
        events_digest=digest,
        key_id=row[7],
        sealed_at_us=row[8],
    )
    tamper(
        sealed,
        "UPDATE seals SET events_digest = %(d)s, hash = %(h)s WHERE number = %(n)s",
        params={"d": digest, "h": body.hash(), "n": number},
    )
    faults = audit(sealed, public_key=KEY.public_key())
    assert f"seal {number}: the signature is not valid" in faults
    assert not any(f.startswith("position") for f in faults)


def test_deleted_seals_are_named(sealed: str) -> None:
    last, last_hash = one(sealed, "SELECT number, hash FROM seals ORDER BY number DESC LIMIT 1")
    assert last >= 3
    tamper(sealed, "DELETE FROM seals WHERE number IN (2, %(last)s)", params={"last": last})
    faults = audit(sealed, expect={last: last_hash})
    assert "seal 2: missing (the next seal is 3)" in faults
    assert f"seal {last}: expected with hash {last_hash}, not in the database" in faults


async def test_text_that_copy_escapes_verifies_and_a_malformed_event_is_named(
    sealed: str,
) -> None:
    awkward = 'a "quote", a back\\slash, a\nnew line, a\ttab, \\N, ünïcode 👍'
    with psycopg.connect(sealed, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (stream_id, version, event_id, type, data)"
            " SELECT stream_id, version + 1, gen_random_uuid(), 'SmsProcessed',"
            " jsonb_build_object('note', %s::text) FROM events"
            " WHERE version = 2 ORDER BY position LIMIT 1",
            (awkward,),
        )
        (bad,) = (
            conn.execute(
                "INSERT INTO events (stream_id, version, event_id, type, data)"
                " VALUES (%s, 1, gen_random_uuid(), 'SmsReceived', %s) RETURNING position",
                (awkward, '{"message": "no sender"}'),
            ).fetchone()
            or ()
        )
    faults = audit(sealed)
    assert [f for f in faults if "hash" in f] == []
    assert [f for f in faults if f.startswith(f"position {bad}: does not decode as SmsReceived")]


def test_the_oldest_transaction_gauge_needs_no_monitoring_role(sealed: str) -> None:
    with psycopg.connect(as_role(sealed, "smsq_service"), autocommit=True) as conn:
        (seconds,) = conn.execute("SELECT oldest_transaction_seconds()").fetchone() or ()
        assert seconds >= 0
        (monitor,) = (
            conn.execute("SELECT pg_has_role('smsq_service', 'pg_monitor', 'MEMBER')").fetchone()
            or ()
        )
    assert not monitor


def test_verify_from_a_seal_checks_that_seal_and_what_follows(sealed: str) -> None:
    inside_first = one(
        sealed,
        "SELECT e.position FROM events e, seals s WHERE s.number = 1"
        " AND (e.tx_id, e.position) <= (s.to_tx_id, s.to_position) ORDER BY e.position LIMIT 1",
    )[0]
    tamper(
        sealed,
        'UPDATE events SET metadata = metadata || \'{"actor": "x"}\' WHERE position = %(p)s',
        params={"p": inside_first},
    )
    assert f"position {inside_first}: the hash does not match the event's contents" in audit(sealed)
    report = verify(as_role(sealed, "smsq_auditor"), from_seal=2)
    assert report.faults == []
    assert report.seals == one(sealed, "SELECT count(*) - 1 FROM seals")[0]


async def test_parts_checked_side_by_side_find_what_one_process_finds(
    databases: Databases,
) -> None:
    """The seals split the log into parts, several for each process, checked
    side by side; faults on both sides of a split and across it are all named."""
    sealed = databases.create()
    seed_messages(sealed, MESSAGES)
    await seal(sealed, batch=20)  # 30 seals: parts enough for every process
    first, last = one(sealed, "SELECT min(position), max(position) FROM events")
    deleted = one(
        sealed,
        "SELECT e.position FROM events e JOIN events n ON n.stream_id = e.stream_id"
        " AND n.version = e.version + 1 WHERE e.version = 1 ORDER BY e.position DESC LIMIT 1",
    )[0]
    tamper(
        sealed,
        'UPDATE events SET metadata = metadata || \'{"actor": "x"}\''
        " WHERE position IN (%(first)s, %(last)s)",
        "DELETE FROM seals WHERE number = 2",
        "DELETE FROM events WHERE position = %(deleted)s",
        params={"first": first, "last": last, "deleted": deleted},
    )
    alone = audit(sealed, jobs=1)
    assert len(alone) >= 4, alone
    for jobs in (2, 3):
        with psycopg.connect(as_role(sealed, "smsq_auditor")) as conn:
            processes, parts = _split(conn, Part(first=1), jobs, PART_EVENTS)
        assert (processes, len(parts)) == (jobs, jobs * PARTS_PER_PROCESS)
        report = verify(
            as_role(sealed, "smsq_auditor"), jobs=jobs, part_events=PART_EVENTS, recent=2
        )
        assert sorted(report.faults) == sorted(alone)
        assert report.events == one(sealed, "SELECT count(*) FROM events")[0]
        # The same from a process with a single thread, whose others are forked
        # (this one, a test runner's, may run threads: they were spawned).
        forked = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FORKED, as_role(sealed, "smsq_auditor"), str(jobs),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await forked.communicate()
        assert forked.returncode == 0
        found = json.loads(out)
        assert sorted(found["faults"]) == sorted(alone)
        assert found["events"] == report.events


# verify() in a process of its own, with nothing but the main thread.
FORKED = f"""
import json, sys
from projections.verify import _start_method, verify
assert _start_method() == "fork"
report = verify(sys.argv[1], jobs=int(sys.argv[2]), part_events={PART_EVENTS}, recent=2)
print(json.dumps({{"faults": report.faults, "events": report.events}}))
"""
