"""bench.curves grows a log fast: the chain trigger is off only inside its own
transactions, and what it writes reads like the service's log."""

from __future__ import annotations

import asyncio
import statistics
from datetime import timedelta

import psycopg
import pytest

from bench import curves
from bench.datagen import phones
from bench.rounds import drained
from domain.events import SmsReceived
from tests.support.postgres import Databases
from tests.support.seed import T0, message_events

MESSAGES = 300


def trigger_state(conn: psycopg.Connection[object]) -> str:
    row = conn.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'events_fill'").fetchone()
    assert row is not None
    return str(row[0])


def test_a_grown_log_has_its_columns_filled_and_the_trigger_back_on(databases: Databases) -> None:
    url = databases.create()
    written = curves.grow(url, 0, MESSAGES, phones(20, seed=1), step=0)
    assert written >= 2 * MESSAGES  # each an SmsReceived and an SmsProcessed, some media
    assert curves.stored(url) == MESSAGES
    with psycopg.connect(url) as conn:
        assert trigger_state(conn) == "O"
        row = conn.execute(
            "SELECT min(position), max(position), count(*), count(DISTINCT tx_id),"
            " count(*) FILTER (WHERE type = 'SmsReceived'"
            "   AND recorded_at <> (data->>'received_at')::timestamptz),"
            " count(*) FILTER (WHERE tx_id >= pg_current_xact_id())"
            " FROM events WHERE metadata->>'correlation_id' = %s",
            (str(curves.LOADED),),
        ).fetchone()
        assert row is not None
        low, high, count, transactions, mistimed, future = row
        assert (count, high - low + 1) == (written, written)  # positions without gaps
        assert (transactions, mistimed, future) == (1, 0, 0)
        # An append after the load goes through the trigger: the next position
        # from the same sequence, and a hash the chain's own function computes.
        appended = conn.execute(
            "INSERT INTO events (stream_id, version, event_id, type, data, metadata)"
            " VALUES ('after-load', 1, gen_random_uuid(), 'Probe', '{}', '{}')"
            " RETURNING position, hash = event_hash(NULL, position, tx_id, stream_id, version,"
            "   event_id, type, schema_version, data, metadata, recorded_at)"
        ).fetchone()
        assert appended == (high + 1, True)


def test_a_failed_load_leaves_nothing_and_the_trigger_on(databases: Databases) -> None:
    url = databases.create()
    events = list(message_events(10, seed=3))
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            curves.load(conn, iter([*events, events[0]]))  # a version written twice
        conn.rollback()
        assert trigger_state(conn) == "O"
        row = conn.execute("SELECT count(*) FROM events WHERE type = 'SmsReceived'").fetchone()
        assert row == (0,)


def test_rebuilt_models_hold_every_message_and_no_follower_is_behind(
    databases: Databases,
) -> None:
    url = databases.create()
    senders = phones(20, seed=2)
    curves.grow(url, 0, MESSAGES, senders, step=0)
    curves.grow(url, MESSAGES, 2 * MESSAGES, senders, step=1)
    replayed = asyncio.run(curves.rebuild(url, at_least=0.5))
    assert replayed["models"] == ["sms_messages", "media", "message_counters"]
    rates = replayed["runs_events_per_s"]
    # Replays repeated until half a second is spent, and not one more: each
    # folds the whole log, so a run's time is its events over its rate.
    spent = [replayed["events"] / rate for rate in rates]
    assert sum(spent) >= 0.5 > sum(spent[:-1])
    assert replayed["events_per_s"] == statistics.median(rates)
    assert drained(url, timeout=5) < 5  # the processing stage and the sealer too
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'processed'),"
            " min(received_at), max(received_at) FROM sms_messages"
        ).fetchone()
        counters = conn.execute("SELECT received FROM message_counters").fetchone()
        places = conn.execute(
            "SELECT DISTINCT tx_id, position FROM projection_checkpoints"
            " WHERE name IN ('sms_messages', 'media', 'message_counters', 'processing', 'sealer')"
        ).fetchall()
    assert row is not None
    # The second load starts where the first ended: no two messages share a time.
    gap = timedelta(milliseconds=20)
    assert row == (2 * MESSAGES, 2 * MESSAGES, T0, T0 + (2 * MESSAGES - 1) * gap)
    assert counters == (2 * MESSAGES,)
    assert len(places) == 1  # every follower where the replays ended
    assert SmsReceived.TYPE in {r["type"] for r in curves.row_sizes(url)}
