"""Request and response bodies, as the HTTP contract spells them."""

from __future__ import annotations

from uuid import UUID

import msgspec

from domain.events import MediaAttached, SmsReceived
from domain.message import MessageState, Status
from projections.log import LogEntry, rfc3339
from projections.media import MediaRow
from projections.messages import MessageRow


class SendSms(msgspec.Struct, forbid_unknown_fields=True):
    """What a client sends; the service takes it in as the command ReceiveSms."""

    from_: str = msgspec.field(name="from")
    to: str
    message: str


class Message(msgspec.Struct, kw_only=True):
    id: UUID
    from_: str = msgspec.field(name="from")
    to: str
    message: str
    status: str
    received_at: str
    media_count: int = 0
    processed_at: str | None = None
    encoding: str | None = None
    segments: int | None = None

    @staticmethod
    def received(event: SmsReceived) -> Message:
        """The message as it stood when the command was accepted."""
        return Message(
            id=event.message_id,
            from_=event.from_,
            to=event.to,
            message=event.message,
            status="received",
            received_at=rfc3339(event.received_at),
        )

    @staticmethod
    def from_row(row: MessageRow) -> Message:
        return Message(
            id=row.id,
            from_=row.from_,
            to=row.to,
            message=row.message,
            status=row.status,
            received_at=rfc3339(row.received_at),
            media_count=row.media_count,
            processed_at=rfc3339(row.processed_at) if row.processed_at else None,
            encoding=row.encoding,
            segments=row.segments,
        )

    @staticmethod
    def from_state(state: MessageState, *, stored: bool) -> Message:
        """The message as its stream tells it; `stored` when the read model has a row
        for it (which only the model can know)."""
        processed = state.processed
        status = state.status if processed or not stored else Status.STORED
        return Message(
            id=state.message_id,
            from_=state.from_,
            to=state.to,
            message=state.message,
            status=status.value,
            received_at=rfc3339(state.received_at),
            media_count=len(state.media),
            processed_at=rfc3339(processed.processed_at) if processed else None,
            encoding=processed.encoding if processed else None,
            segments=processed.segments if processed else None,
        )


class Event(LogEntry):
    """An event as the log holds it."""


class MessagePage(msgspec.Struct):
    items: list[Message]
    limit: int
    offset: int
    next: str | None


class Media(msgspec.Struct, kw_only=True):
    sha256: str
    content_type: str
    size: int
    width: int
    height: int
    url: str
    attached_at: str

    @staticmethod
    def attached(source: MediaAttached | MediaRow) -> Media:
        return Media(
            sha256=source.sha256,
            content_type=source.content_type,
            size=source.size,
            width=source.width,
            height=source.height,
            url=f"/media/{source.sha256}",
            attached_at=rfc3339(source.attached_at),
        )


class MediaList(msgspec.Struct):
    items: list[Media]
