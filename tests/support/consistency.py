"""After a fault: every acknowledged message is in the read model, and nothing was folded twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import psycopg


async def _one(conn: psycopg.AsyncConnection[Any], statement: str, *params: Any) -> Any:
    cur = await conn.execute(statement.encode(), params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def assert_folded_once(url: str, acknowledged: Sequence[str], within: float) -> None:
    """Wait until the read model itself (not the stream fallback of GET) holds
    every acknowledged message as processed, then check that each fold counted
    each event once: one row per SmsReceived, one SmsProcessed per message, and
    the /metrics counters equal to counts taken from the log."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + within
        while (
            missing := await _one(
                conn,
                "SELECT count(*) FROM unnest(%s::uuid[]) AS a(id) WHERE NOT EXISTS"
                " (SELECT 1 FROM sms_messages m WHERE m.id = a.id AND m.status = 'processed')",
                list(acknowledged),
            )
        ) > 0:
            assert time.monotonic() < deadline, f"{missing} acknowledged messages not processed"
            await asyncio.sleep(0.05)
        # The counters projector may still be a batch behind the read model.
        # Behind means an event past a checkpoint in the reading order
        # (tx_id, position): the last event read need not hold the top position.
        while await _one(
            conn,
            "SELECT EXISTS (SELECT 1 FROM events e, projection_checkpoints c"
            " WHERE (e.tx_id, e.position) > (c.tx_id, c.position))",
        ) or await _one(
            conn, "SELECT count(*) FROM events WHERE type = 'SmsReceived'"
        ) != await _one(conn, "SELECT count(*) FROM events WHERE type = 'SmsProcessed'"):
            assert time.monotonic() < deadline, "the projectors did not catch up"
            await asyncio.sleep(0.05)

        received = await _one(conn, "SELECT count(*) FROM events WHERE type = 'SmsReceived'")
        assert await _one(conn, "SELECT count(*) FROM sms_messages") == received
        assert (
            await _one(
                conn,
                "SELECT count(DISTINCT stream_id) FROM events WHERE type = 'SmsProcessed'",
            )
            == received
        )
        counters = await (
            await conn.execute("SELECT received, processed FROM message_counters")
        ).fetchone()
        assert counters == (received, received)
