"""How far each projector trails the log, and what holds them all back."""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg


class ProjectorLag(msgspec.Struct, frozen=True, array_like=True):
    name: str
    position: int
    seconds: float
    stalled_position: int | None = None
    """The event it cannot fold (it stopped there), or None."""


class LogHealth(msgspec.Struct, frozen=True):
    last_position: int
    oldest_transaction_seconds: float
    projectors: list[ProjectorLag]


# Lag is the age of the first committed event a projector has not folded yet
# (0 when none), found by one index probe per projector. The oldest
# transaction that holds an xid sets the horizon below which every reader
# stops, wherever in the cluster it runs (seeing other roles' sessions takes
# the owner's view: a function of the owner's lends it for this figure only).
_HEALTH = """
SELECT
    (SELECT coalesce(max(position), 0) FROM events),
    oldest_transaction_seconds(),
    coalesce((
        SELECT json_agg(json_build_array(c.name, c.position, coalesce(extract(epoch FROM
                   clock_timestamp() - n.recorded_at), 0)::float8, c.stalled_position)
               ORDER BY c.name)
        FROM projection_checkpoints AS c
        LEFT JOIN LATERAL (
            SELECT recorded_at FROM events AS e
            WHERE (e.tx_id, e.position) > (c.tx_id, c.position)
            ORDER BY e.tx_id, e.position LIMIT 1
        ) AS n ON true
    ), '[]')::text
"""


async def read_health(conn: psycopg.AsyncConnection[Any]) -> LogHealth:
    cur = await conn.execute(_HEALTH)
    row = await cur.fetchone()
    assert row is not None
    last, oldest, projectors = row
    return LogHealth(
        last_position=last,
        oldest_transaction_seconds=max(0.0, oldest),
        projectors=msgspec.json.decode(projectors, type=list[ProjectorLag]),
    )
