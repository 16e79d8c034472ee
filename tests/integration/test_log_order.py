"""The log's reading order is numeric in transaction ids, whatever their digit count.

Transaction ids 999 and 1000 sort the other way round as text. A server of
this test's own starts with small ids, so a few hundred empty transactions
bring the next ones across that boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.runtime.embedded import ensure_database
from commands.event_store import append
from migrations import migrate
from projections.log import START, next_range
from tests.integration.test_projections import new, received
from tests.support.postgres import OwnServer

BOUNDARY = 1000


@pytest.fixture
def url(cluster_path: Path) -> Iterator[str]:
    own = OwnServer(cluster_path)
    try:
        ensure_database(own.admin_url, "smsq")
        yield own.url("smsq")
    finally:
        own.close()


def next_xid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_current_xact_id()::text").fetchone()
    assert row is not None
    return int(row[0])


async def test_a_range_across_a_digit_boundary_ends_at_its_last_event(url: str) -> None:
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert next_xid(conn) < BOUNDARY - 20, "the server's ids start too high for this test"
        while next_xid(conn) < BOUNDARY - 6:
            pass
    # Twelve transactions of five events each, from just below the boundary to past it.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for _ in range(12):
            async with conn.transaction():
                await append(conn, [new(received()) for _ in range(5)])
        cur = await conn.execute("SELECT min(tx_id)::text, max(tx_id)::text FROM events")
        low, high = await cur.fetchone() or (0, 0)
        assert int(low) < BOUNDARY <= int(high)

        found = await next_range(conn, START, 40)
        assert found is not None
        hi, count = found
        cur = await conn.execute(
            "SELECT e.tx_id::text, e.position FROM events AS e"
            " ORDER BY e.tx_id, e.position OFFSET 39 LIMIT 1"
        )
        fortieth = await cur.fetchone()
        assert fortieth is not None
        assert (hi.tx_id, hi.position) == (int(fortieth[0]), fortieth[1])
        assert count == 40
