"""A message's state, folded from its own stream (`sms-{id}`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import msgspec

from domain.events import Event, MediaAttached, SmsProcessed, SmsReceived


class Status(StrEnum):
    RECEIVED = "received"
    STORED = "stored"
    PROCESSED = "processed"


class MessageState(msgspec.Struct, frozen=True, kw_only=True):
    message_id: UUID
    sender: str
    recipient: str
    text: str
    received_at: datetime
    version: int = 1
    processed: SmsProcessed | None = None
    media: tuple[MediaAttached, ...] = ()

    @property
    def status(self) -> Status:
        """What the stream alone can tell; `stored` is known only to the read model."""
        return Status.PROCESSED if self.processed is not None else Status.RECEIVED


def evolve(state: MessageState | None, event: Event) -> MessageState:
    if isinstance(event, SmsReceived):
        return MessageState(
            message_id=event.message_id,
            sender=event.sender,
            recipient=event.recipient,
            text=event.text,
            received_at=event.received_at,
        )
    if state is None:
        raise ValueError(f"{event.TYPE} before SmsReceived in the stream of {event.message_id}")
    if isinstance(event, SmsProcessed):
        return msgspec.structs.replace(state, processed=event, version=state.version + 1)
    return msgspec.structs.replace(state, media=(*state.media, event), version=state.version + 1)


def fold(events: Iterable[Event]) -> MessageState | None:
    state: MessageState | None = None
    for event in events:
        state = evolve(state, event)
    return state
