"""Writing a message's stream straight through the command side, for projection tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from uuid_utils.compat import uuid7

from commands.attach_media import attach_media
from commands.event_store import Append, append
from domain.commands import AttachMedia, Image
from domain.events import EventMetadata, SmsReceived, stream_of
from tests.support.phones import random_phone


def meta() -> EventMetadata:
    command = uuid7()
    return EventMetadata(correlation_id=command, causation_id=command)


async def a_message(conn: psycopg.AsyncConnection[Any]) -> UUID:
    event = SmsReceived(
        message_id=uuid7(),
        from_=random_phone(),
        to="+447911123456",
        message="Hello",
        received_at=datetime.now(UTC),
    )
    await append(conn, [Append(stream_of(event.message_id), 0, [event], meta())])
    return event.message_id


async def attach(conn: psycopg.AsyncConnection[Any], message_id: UUID, *images: Image) -> None:
    await attach_media(conn, AttachMedia(message_id=message_id, images=images), meta())
