"""Events: facts that happened, past tense, each with a stable type name.

The `TYPE` strings and field names are the stored schema of the log. Renaming
a class is free; renaming a `TYPE` is a migration of the log. Changing the
fields is a new `SCHEMA_VERSION`: the struct here is always the current
version, and `domain.upcasting` reads the older ones the log still holds as
this one.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

import msgspec

from domain.access import AccessEvent, ApiKeyCreated, ApiKeyRevoked


class EventMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """Who and what caused an event; stored beside it, never part of decisions.

    Every field is written, defaults included: an auditor reads "anonymous"
    in the log itself rather than inferring it from an absent key.
    """

    correlation_id: UUID
    causation_id: UUID
    actor: str = "anonymous"
    request_id: str | None = None


class SmsReceived(msgspec.Struct, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "SmsReceived"
    SCHEMA_VERSION: ClassVar[int] = 1

    message_id: UUID
    from_: str = msgspec.field(name="from")
    to: str
    message: str
    received_at: datetime


class SmsProcessed(msgspec.Struct, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "SmsProcessed"
    SCHEMA_VERSION: ClassVar[int] = 1

    message_id: UUID
    encoding: str
    segments: int
    from_region: str | None
    to_region: str | None
    processed_at: datetime


class MediaAttached(msgspec.Struct, frozen=True, kw_only=True):
    """Version 2 added `format`, the image's format as Pillow names it
    (`JPEG`, `MPO`, `PNG`, `GIF`, `WEBP`)."""

    TYPE: ClassVar[str] = "MediaAttached"
    SCHEMA_VERSION: ClassVar[int] = 2

    message_id: UUID
    sha256: str
    content_type: str
    format: str
    size: int
    width: int
    height: int
    attached_at: datetime


MessageEvent = SmsReceived | SmsProcessed | MediaAttached
"""What a message's stream (`sms-{message_id}`) holds."""

Event = MessageEvent

EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls for cls in (SmsReceived, SmsProcessed, MediaAttached)
}

AnyEvent = Event | AccessEvent
"""Whatever the log holds: the messages' events and the access stream's (domain/access.py)."""

LOGGED_TYPES: dict[str, type[AnyEvent]] = {
    **EVENT_TYPES,
    **{cls.TYPE: cls for cls in (ApiKeyCreated, ApiKeyRevoked)},
}


def stream_of(message_id: UUID) -> str:
    return f"sms-{message_id}"
