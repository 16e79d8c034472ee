"""Pruning write-side state that has served its purpose.

`sender_window` rows older than the rate window decide nothing any more, and
Idempotency-Key results are kept for a day (clients retry within minutes).
Neither table is the truth: the log can rebuild both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from domain.sender import RATE_WINDOW

KEY_RETENTION = timedelta(days=1)

log = logging.getLogger(__name__)


# A bounded batch, oldest first, found through the age column's index and
# deleted by row address: no one statement holds its locks or its snapshot for
# long. The cut-off is from now(), not clock_timestamp(): a stable function,
# which the planner reads when it plans, so it knows how few rows are past it
# (each statement is its own transaction here, so the two are the same time).
# Run twice a minute, it is never prepared: a generic plan could not know the
# cut-off, and one made while the table was small would be kept as it grows.
_PRUNE = """
DELETE FROM {table} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {table} WHERE {column} < now() - %s
    ORDER BY {column} LIMIT %s
))
"""
BATCH = 5000


async def _prune(
    conn: psycopg.AsyncConnection[Any], table: str, column: str, older_than: timedelta
) -> int:
    statement = sql.SQL(_PRUNE).format(table=sql.Identifier(table), column=sql.Identifier(column))
    total = 0
    while True:
        cur = await conn.execute(statement, (older_than, BATCH), prepare=False)
        total += cur.rowcount
        if cur.rowcount < BATCH:
            return total


async def prune(conn: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
    windows = await _prune(conn, "sender_window", "received_at", RATE_WINDOW * 2)
    keys = await _prune(conn, "idempotency_keys", "created_at", KEY_RETENTION)
    return windows, keys


async def keep_pruning(
    pool: AsyncConnectionPool[Any], stop: asyncio.Event, every: float = 30.0
) -> None:
    """Prune every `every` seconds until `stop` is set.

    Stopped by an event, not by cancelling: on Python 3.11 a cancellation that
    lands while the pool hands out a connection can be swallowed, and the task
    would then sleep on through the shutdown.
    """
    while not stop.is_set():
        try:
            async with pool.connection() as conn:
                await prune(conn)
        except (psycopg.Error, OSError) as error:
            log.warning("pruning failed: %s", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
