"""The event log, for auditors: one message's stream, and the whole log page by page."""

from __future__ import annotations

from enum import Enum
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from api.http.consistency import CONSISTENCY, ConsistencyToken, await_log
from api.http.openapi import NO_STORE
from api.http.problems import (
    BIGINT,
    EXACT_BIGINT,
    MALFORMED,
    UNAVAILABLE,
    refusals,
    refuse_unknown_query,
)
from api.http.schemas import Event
from api.http.services import Services
from commands.event_store import read_stream
from domain.events import LOGGED_TYPES, stream_of
from projections.log import read_after

EventType = Enum("EventType", {name: name for name in LOGGED_TYPES}, type=str)  # type: ignore[misc]


class Stream(msgspec.Struct):
    items: list[Event]


class LogPage(msgspec.Struct):
    items: list[Event]
    next_after: int


class AuditController(Controller):
    tags = ("audit",)
    opt = {"scope": "audit"}  # noqa: RUF012 (Litestar's layer attribute)
    cache_control = NO_STORE

    @get(
        "/messages/{message_id:uuid}/events",
        summary="A message's events, oldest first",
        responses=refusals({404: "No message has this id"} | UNAVAILABLE),
    )
    async def stream(
        self, message_id: FromPath[UUID], services: NamedDependency[Services]
    ) -> Stream:
        async with services.pool.connection() as conn:
            recorded = await read_stream(conn, stream_of(message_id))
        if not recorded:
            raise NotFoundException(f"no message {message_id}")
        return Stream([Event.recorded(e) for e in recorded])

    @get(
        "/events",
        summary="The event log, page by page",
        description=(
            "Events in the log's reading order: by writing transaction, then by position"
            " (position order within a transaction), and only those whose transaction and"
            " every earlier one have finished, so a reader never skips an event that"
            " commits late. `after` is a position: the page starts after that event in"
            " this order. Start at 0 and pass back `next_after` to see every event once."
        ),
        before_request=refuse_unknown_query,
        responses=refusals(
            MALFORMED
            | {
                422: "A query parameter is invalid, given twice, or not one this operation"
                " takes (`type` names an event type); or the Consistency-Token is not one"
                " this service gave"
            }
            | CONSISTENCY
        ),
    )
    async def log(
        self,
        services: NamedDependency[Services],
        after: Annotated[int, QueryParameter(ge=0, le=BIGINT, schema_extra=EXACT_BIGINT)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        # Named as the query parameter, so that a 422 names the field the client sent.
        type: Annotated[
            EventType | None,
            QueryParameter(
                # Left out, it is absent: the word `null` is not an event type.
                schema_extra={"one_of": None, "type": "string", "enum": list(LOGGED_TYPES)}
            ),
        ] = None,
        consistency_token: ConsistencyToken = None,
    ) -> LogPage:
        await await_log(services, consistency_token)
        async with services.pool.connection() as conn:
            recorded = await read_after(
                conn, after, limit, event_type=None if type is None else type.value
            )
        return LogPage(
            items=[Event.recorded(e) for e in recorded],
            next_after=recorded[-1].position if recorded else after,
        )
