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
from psycopg_pool import AsyncConnectionPool

from domain.sender import RATE_WINDOW

KEY_RETENTION = timedelta(days=1)

log = logging.getLogger(__name__)


async def prune(conn: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
    windows = await conn.execute(
        "DELETE FROM sender_window WHERE received_at < clock_timestamp() - %s", (RATE_WINDOW * 2,)
    )
    keys = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < clock_timestamp() - %s", (KEY_RETENTION,)
    )
    return windows.rowcount, keys.rowcount


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
