"""Liveness and readiness."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.response import Response

from api.http.problems import problem, refusals
from api.http.services import Services
from migrations import available


class Health(msgspec.Struct):
    status: str


@get("/healthz", summary="The process is alive", tags=["operations"], opt={"public": True})
async def healthz() -> Health:
    return Health("ok")


@get(
    "/readyz",
    summary="The database answers and its schema is current",
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
    except Exception as error:  # any failure to answer means not ready
        return problem(503, f"the database does not answer: {error}", slug="not-ready")
    missing = sorted(expected - applied)
    if missing:
        return problem(503, f"migrations not applied: {', '.join(missing)}", slug="not-ready")
    return Response(Health("ready"))
