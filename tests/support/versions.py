"""Events as older versions of the service wrote them, for tests of upcasting."""

from __future__ import annotations

from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb
from uuid_utils.compat import uuid7

from domain.events import Event, EventMetadata, MediaAttached


def as_version_1(event: MediaAttached) -> dict[str, Any]:
    """A MediaAttached as version 1 wrote it: every field but the format."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    del data["format"]
    return data


def as_written(event: Event) -> dict[str, Any]:
    """An event's data as the current version writes it."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    return data


async def write_stored(
    conn: psycopg.AsyncConnection[Any],
    stream_id: str,
    version: int,
    event_type: str,
    schema_version: int,
    data: dict[str, Any],
) -> None:
    """Insert an event into the log as it stands: this data under this version,
    with none of today's encoding in between."""
    command = uuid7()
    metadata = EventMetadata(correlation_id=command, causation_id=command)
    await conn.execute(
        "INSERT INTO events (stream_id, version, event_id, type, schema_version, data, metadata)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            stream_id,
            version,
            uuid7(),
            event_type,
            schema_version,
            Jsonb(data),
            Jsonb(msgspec.to_builtins(metadata)),
        ),
    )
