"""The event log, for auditors: one message's stream, and the whole log page by page."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from api.schemas import rfc3339
from api.services import Services
from commands.event_store import RecordedEvent, read_stream
from domain.events import EVENT_TYPES, stream_of
from projections.log import read_after

EventType = Enum("EventType", {name: name for name in EVENT_TYPES}, type=str)  # type: ignore[misc]


class Event(msgspec.Struct, kw_only=True):
    position: int
    stream_id: str
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: str
    event_id: UUID
    schema_version: int

    @staticmethod
    def recorded(event: RecordedEvent) -> Event:
        return Event(
            position=event.position,
            stream_id=event.stream_id,
            version=event.version,
            type=event.type,
            data=msgspec.json.decode(event.data),
            metadata=msgspec.json.decode(event.metadata),
            recorded_at=rfc3339(event.recorded_at),
            event_id=event.event_id,
            schema_version=event.schema_version,
        )


class Stream(msgspec.Struct):
    items: list[Event]


class LogPage(msgspec.Struct):
    items: list[Event]
    next_after: int


class AuditController(Controller):
    tags = ("audit",)
    opt = {"scope": "audit"}  # noqa: RUF012 (Litestar's layer attribute)

    @get("/messages/{message_id:uuid}/events", summary="A message's events, oldest first")
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
    )
    async def log(
        self,
        services: NamedDependency[Services],
        after: Annotated[int, QueryParameter(ge=0, le=2**63 - 1)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        event_type: Annotated[EventType | None, QueryParameter(name="type")] = None,
    ) -> LogPage:
        async with services.pool.connection() as conn:
            recorded = await read_after(
                conn, after, limit, event_type=None if event_type is None else event_type.value
            )
        return LogPage(
            items=[Event.recorded(e) for e in recorded],
            next_after=recorded[-1].position if recorded else after,
        )
