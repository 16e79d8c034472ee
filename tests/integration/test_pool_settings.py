"""The service's pool: every statement bounded, and the URL's own options kept."""

from __future__ import annotations

import psycopg
import pytest

from api.cli.support import SERVICE_ROLE, as_role
from api.runtime.pooling import open_pool
from api.runtime.settings import Settings


async def test_a_statement_of_the_pool_is_cancelled_past_the_timeout(database_url: str) -> None:
    settings = Settings(database_url=database_url, statement_timeout=0.2)
    pool = open_pool(as_role(database_url, SERVICE_ROLE), settings, name="t")
    async with pool, pool.connection() as conn:
        cur = await conn.execute(
            "SELECT current_user, current_setting('statement_timeout'),"
            " current_setting('idle_in_transaction_session_timeout')"
        )
        # The role the URL switches to survives the pool's own options.
        assert await cur.fetchone() == (SERVICE_ROLE, "200ms", "10s")
        with pytest.raises(psycopg.errors.QueryCanceled):
            await conn.execute("SELECT pg_sleep(2)")
