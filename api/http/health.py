"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg
from litestar import get
from litestar.di import NamedDependency
from litestar.response import Response

from api.http.problems import problem, refusals
from api.http.services import Services
from migrations import available
from projections.log import rfc3339


class Stall(msgspec.Struct):
    projector: str
    position: int | None
    error: str
    since: str


class Health(msgspec.Struct, omit_defaults=True):
    status: str
    stalled: list[Stall] = msgspec.field(default_factory=list)


@get("/healthz", summary="The process is alive", tags=["operations"], opt={"public": True})
async def healthz() -> Health:
    return Health("ok")


@get(
    "/readyz",
    summary="The database answers and its schema is current",
    description=(
        "200 `ready`; 200 `degraded` with `stalled` naming each projector stopped at an"
        " event it cannot fold, and that event's position; 503 otherwise."
    ),
    tags=["operations"],
    opt={"public": True},
    responses=refusals({503: "The database does not answer, or a migration is not applied"}),
)
async def readyz(services: NamedDependency[Services]) -> Response[Health]:
    expected = {m.name for m in available()}
    try:
        async with services.pool.connection(timeout=services.settings.db_timeout) as conn:
            cur = await conn.execute("SELECT name FROM schema_migrations")
            applied = {row[0] for row in await cur.fetchall()}
            missing = sorted(expected - applied)
            stalls = [] if missing else await _stalls(conn)
    except Exception as error:  # any failure to answer means not ready
        return problem(503, f"the database does not answer: {error}", slug="not-ready")
    if missing:
        return problem(503, f"migrations not applied: {', '.join(missing)}", slug="not-ready")
    if stalls:
        # Still ready: messages are accepted and answered; the read models
        # (or the seals) stay behind until the stalled projector is fixed.
        return Response(Health("degraded", stalls))
    return Response(Health("ready"))


async def _stalls(conn: psycopg.AsyncConnection[Any]) -> list[Stall]:
    cur = await conn.execute(
        "SELECT name, stalled_position, stalled_error, stalled_at FROM projection_checkpoints"
        " WHERE stalled_at IS NOT NULL ORDER BY name"
    )
    return [Stall(r[0], r[1], r[2] or "", rfc3339(r[3])) for r in await cur.fetchall()]
