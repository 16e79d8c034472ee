"""Request and response bodies, as the HTTP contract spells them."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec

from domain.events import MediaAttached, SmsReceived
from domain.message import MessageState, Status
from projections.log import LogEntry, rfc3339
from projections.media import MediaRow
from projections.messages import MessageRow

# The shape of a number the document can state; the service also asks libphonenumber
# whether the number is valid, which no pattern can say. A client generated from the
# document refuses what the service would refuse for its shape, before sending it.
E164 = r"^\+[1-9][0-9]{1,14}$"
Phone = Annotated[
    str,
    msgspec.Meta(
        pattern=E164,
        description="E.164 ('+', country code, number; at most 15 digits),"
        " and a number libphonenumber holds valid",
        examples=["+14155550100"],
        # Names the check no pattern can state, for generators that know it
        # (Litestar copies `extra` into the field's schema).
        extra_json_schema={"extra": {"format": "e164"}},
    ),
]
Text = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=160,
        pattern=r"^[^\x00]*$",
        description="1-160 characters (Unicode code points), no NUL, no lone surrogate",
    ),
]


class SendSms(msgspec.Struct, forbid_unknown_fields=True):
    """What a client sends; the service takes it in as the command ReceiveSms."""

    from_: Phone = msgspec.field(name="from")
    to: Phone
    message: Text


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
