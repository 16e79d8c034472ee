"""Who is asking, and for which request: what every event written on a request carries."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request
from uuid_utils.compat import uuid7

from domain.events import EventMetadata

ANONYMOUS = "anonymous"


def actor_of(request: Request[Any, Any, Any]) -> str:
    """The id of the API key the request was made with (set by the access guard), or
    "anonymous" when the service is open."""
    actor: str = request.scope["state"].get("actor", ANONYMOUS)
    return actor


def request_id_of(request: Request[Any, Any, Any]) -> str | None:
    """The request's id, given by the client in X-Request-ID or made up by the server."""
    request_id: str | None = request.scope["state"].get("request_id")
    return request_id


def request_metadata(request: Request[Any, Any, Any]) -> EventMetadata:
    """Metadata for the first event a request causes: it starts its own correlation."""
    command_id: UUID = uuid7()
    return EventMetadata(
        correlation_id=command_id,
        causation_id=command_id,
        actor=actor_of(request),
        request_id=request_id_of(request),
    )
