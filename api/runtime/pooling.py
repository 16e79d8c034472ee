"""The database pool every process opens, and checking a pooled connection
before use without a round trip when it is healthy."""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from api.runtime.settings import Settings


async def check_if_disturbed(conn: psycopg.AsyncConnection[Any]) -> None:
    """Raise for a connection the server has dropped, so the pool replaces it.

    An idle connection has nothing to read. If its socket is readable, the
    server said something unasked (a shutdown notice, the end of the stream
    after a crash or a restart): only then is the full check run, which
    raises for a broken connection. A quiet one is handed out as it is,
    sparing every checkout the round trip of the pool's own check.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    probe = select.poll()
    probe.register(conn.fileno(), select.POLLIN)
    if probe.poll(0):
        await AsyncConnectionPool.check_connection(conn)


def open_pool(url: str, settings: Settings, *, name: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        url,
        min_size=min(2, settings.pool_max),
        max_size=settings.pool_max,
        timeout=settings.db_timeout,
        name=name,
        open=False,
        # A connection broken by a database restart is noticed here and
        # replaced, instead of failing the request that drew it.
        check=check_if_disturbed,
        kwargs={
            "autocommit": True,
            # Each role's connections are named in pg_stat_activity, unless
            # the URL or PGAPPNAME names them.
            "fallback_application_name": f"smsq-{name}",
            # A transaction left open anywhere holds every projector back
            # (readers stay below the oldest one in flight): cut it off. And
            # no statement of a request may hold a connection without end.
            # Added to the URL's own options (a role to switch to, say), which
            # an `options` here would otherwise replace.
            "options": " ".join(
                filter(
                    None,
                    (
                        str(conninfo_to_dict(url).get("options") or ""),
                        "-c idle_in_transaction_session_timeout=10000",
                        # Times come back in UTC (psycopg's `timezone.utc`), as the
                        # API writes them: nothing to convert per value.
                        "-c TimeZone=UTC",
                        f"-c statement_timeout={round(settings.statement_timeout * 1000)}",
                    ),
                )
            ),
        },
    )
