"""Liveness and readiness (see api/http/readiness.py for how readiness is known)."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.response import Response

from api.http.problems import problem, refusals
from api.http.readiness import Health, NotReady
from api.http.services import Services


@get("/healthz", summary="The process is alive", tags=["operations"], opt={"public": True})
async def healthz() -> Health:
    return Health("ok")


@get(
    "/readyz",
    summary="The database answers and its schema is current",
    description=(
        "200 `ready`; 200 `degraded` with `stalled` naming each projector stopped at an"
        " event it cannot fold, and that event's position; 503 otherwise. Answered from a"
        " check made about once a second; what failed is in the service's log."
    ),
    tags=["operations"],
    opt={"public": True},
    responses=refusals({503: "The database does not answer, or a migration is not applied"}),
)
async def readyz(services: NamedDependency[Services]) -> Response[Health]:
    last = services.readiness.last
    if isinstance(last, NotReady):
        return problem(503, last.detail, slug="not-ready")
    return Response(last)
