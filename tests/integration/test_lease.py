"""A projector's lease reads at most its batch from the log, however long the
backlog, and however small the log was when the lease first ran.

PostgreSQL keeps a prepared statement's generic plan until the statistics of
its tables change, not as they grow. The lease made its plan on a new
deployment's log of a few hundred events: a bitmap scan of everything past
the checkpoint, sorted, then cut to the batch. Once a backlog built up, every
lease read all of it (20,000 events: 13 ms a lease, where the batch's read
takes 0.1 ms), until autovacuum next analysed the log.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import psycopg

from projections.log import Checkpoint
from projections.runner import ensure_checkpoints, step
from tests.support.postgres import Databases
from tests.support.seed import T0, seed_messages

BATCH = 1000
BACKLOG = 10_000  # messages: 20,000 events
# Leases on the new deployment's log: psycopg prepares a statement at its
# sixth run, and PostgreSQL weighs the generic plan after five custom ones.
RUNS = 20

# Entries read from the log in its reading order's index, and rows read by
# sequential scans of it. Not every index of the log: the seeding's appends
# look up each stream's previous event by another one, and a connection's
# counts reach these views when it closes, perhaps only after `before`.
_READS = """
SELECT i.idx_tup_read + t.seq_tup_read
FROM pg_stat_user_tables AS t JOIN pg_stat_user_indexes AS i USING (relid)
WHERE t.relname = 'events' AND i.indexrelname = 'events_tx_position_idx'
"""


class Follower:
    """Folds nothing: the batch is the lease, and the checkpoint's move."""

    name = "lease-under-test"

    async def apply(self, conn: Any, lo: Checkpoint, hi: Checkpoint) -> None:
        return None


async def reads(conn: psycopg.AsyncConnection[Any]) -> int:
    """What has been read of the log in its reading order so far."""
    await conn.execute("SELECT pg_stat_force_next_flush()")  # flushed once idle
    cur = await conn.execute(_READS)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def lease_reads(url: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await ensure_checkpoints(conn, [Follower.name])
        for _ in range(RUNS):
            await step(conn, Follower(), BATCH)
        await asyncio.to_thread(seed_messages, url, BACKLOG, seed=8, start=T0 + timedelta(days=1))
        before = await reads(conn)
        folded = await step(conn, Follower(), BATCH)
        return folded or 0, await reads(conn) - before


def test_a_lease_reads_at_most_its_batch_however_long_the_backlog(databases: Databases) -> None:
    url = databases.create()
    with psycopg.connect(url, autocommit=True) as conn:
        # No ANALYZE comes by to make the lease plan afresh meanwhile.
        conn.execute("ALTER TABLE events SET (autovacuum_enabled = off)")
    seed_messages(url, 150)  # a new deployment's log: 300 events
    folded, read = asyncio.run(lease_reads(url))
    assert folded == BATCH
    # The batch, and the first event past it that ends the index scan.
    assert read <= BATCH + 1, f"the lease read {read} entries of the log for {BATCH} events"
