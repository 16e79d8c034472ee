"""Who is asking, and for which request: what every event written on a request carries."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request
from uuid_utils.compat import uuid7

from domain.events import EventMetadata

ANONYMOUS = "anonymous"


def actor_of(request: Request[Any, Any, Any]) -> str:
    """The caller as the log records it; until keys exist every caller is anonymous."""
    return ANONYMOUS


def request_metadata(request: Request[Any, Any, Any]) -> EventMetadata:
    """Metadata for the first event a request causes: it starts its own correlation."""
    command_id: UUID = uuid7()
    return EventMetadata(
        correlation_id=command_id,
        causation_id=command_id,
        actor=actor_of(request),
        request_id=request.headers.get("x-request-id"),
    )
