"""The seals, and the key that verifies them, for auditors."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import QueryParameter

from api.http.openapi import NO_STORE
from api.http.problems import (
    BIGINT,
    EXACT_BIGINT,
    MALFORMED,
    UNAVAILABLE,
    refusals,
    refuse_unknown_query,
)
from api.http.services import Services
from projections.log import rfc3339


class Seal(msgspec.Struct, kw_only=True):
    number: int
    from_position: int
    to_position: int
    events: int
    hash: str
    previous: str
    signature: str
    sealed_at: str
    key_id: str


class SealPage(msgspec.Struct):
    items: list[Seal]
    next_after: int


_SEALS = """
SELECT number, from_position, to_position, events, hash, previous, signature, sealed_at, key_id
FROM seals WHERE number > %s ORDER BY number LIMIT %s
"""


class SealsController(Controller):
    path = "/audit"
    tags = ("audit",)
    opt = {"scope": "audit"}  # noqa: RUF012 (Litestar's layer attribute)
    cache_control = NO_STORE

    @get(
        "/seals",
        summary="The seals, in order",
        description=(
            "Each seal covers the events after the previous seal's end, in the log's"
            " reading order, chains to the previous seal's hash and is signed (Ed25519)"
            " over its hash. Start at 0 and pass back `next_after`."
        ),
        before_request=refuse_unknown_query,
        responses=refusals(
            MALFORMED
            | {422: "A query parameter is invalid, given twice, or not one this operation takes"}
            | UNAVAILABLE
        ),
    )
    async def seals(
        self,
        services: NamedDependency[Services],
        after: Annotated[int, QueryParameter(ge=0, le=BIGINT, schema_extra=EXACT_BIGINT)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> SealPage:
        async with services.pool.connection() as conn:
            cur = await conn.execute(_SEALS, (after, limit))
            rows = await cur.fetchall()
        items = [
            Seal(
                number=r[0],
                from_position=r[1],
                to_position=r[2],
                events=r[3],
                hash=r[4],
                previous=r[5],
                signature=r[6],
                sealed_at=rfc3339(r[7]),
                key_id=r[8],
            )
            for r in rows
        ]
        return SealPage(items, items[-1].number if items else after)

    @get(
        "/public-key",
        summary="The key that verifies the seals (PEM)",
        media_type="application/x-pem-file",
        responses=refusals({404: "No seal key has been made yet"} | UNAVAILABLE),
    )
    async def public_key(self, services: NamedDependency[Services]) -> Response[str]:
        async with services.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT public_key FROM seal_keys ORDER BY created_at DESC, key_id LIMIT 1"
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFoundException("no seal has been signed yet")
        return Response(row[0], media_type="application/x-pem-file")
