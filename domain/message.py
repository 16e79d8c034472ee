"""One message: its state, folded from its own stream (`sms-{id}`), and the
commands decided on it (attaching images, processing)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import assert_never
from uuid import UUID

import msgspec

from domain.commands import AttachMedia, MessageCommand, ProcessSms
from domain.decider import Decider, Rejection
from domain.encoding import segment
from domain.events import MediaAttached, MessageEvent, SmsProcessed, SmsReceived
from domain.phone import PhoneNumber


class Status(StrEnum):
    RECEIVED = "received"
    STORED = "stored"
    PROCESSED = "processed"


class MessageState(msgspec.Struct, frozen=True, kw_only=True):
    message_id: UUID
    from_: str
    to: str
    message: str
    received_at: datetime
    version: int = 1
    processed: SmsProcessed | None = None
    media: tuple[MediaAttached, ...] = ()

    @property
    def status(self) -> Status:
        """What the stream alone can tell; `stored` is known only to the read model."""
        return Status.PROCESSED if self.processed is not None else Status.RECEIVED


class UnknownMessage(Rejection, frozen=True):
    message_id: UUID


class TooManyImages(Rejection, frozen=True):
    """The images new to the message would take it past its limit: none is attached
    (all or nothing, so a client never has to find out which of its files were kept)."""

    message_id: UUID
    attached: int
    """Images the message has."""
    adding: int
    """Distinct images of the command that it does not have yet."""
    limit: int


class BrokenStream(Exception):
    """A stream that cannot be folded: an event before the message's SmsReceived."""


def evolve(state: MessageState | None, event: MessageEvent) -> MessageState:
    match event:
        case SmsReceived():
            return MessageState(
                message_id=event.message_id,
                from_=event.from_,
                to=event.to,
                message=event.message,
                received_at=event.received_at,
            )
        case SmsProcessed() | MediaAttached() if state is None:
            raise BrokenStream(f"{event.TYPE} before SmsReceived in sms-{event.message_id}")
        case SmsProcessed():
            return msgspec.structs.replace(state, processed=event, version=state.version + 1)
        case MediaAttached():
            media = (*state.media, event)
            return msgspec.structs.replace(state, media=media, version=state.version + 1)
        case _:
            assert_never(event)


def decide(
    command: MessageCommand, state: MessageState | None, now: datetime
) -> tuple[SmsProcessed | MediaAttached, ...] | UnknownMessage | TooManyImages:
    if state is None:
        return UnknownMessage(command.message_id)
    match command:
        case AttachMedia():
            return _attach(command, state, now)
        case ProcessSms():
            return _process(state, now)
        case _:
            assert_never(command)


message_decider: Decider[MessageCommand, MessageState | None, MessageEvent] = Decider(
    initial=None, decide=decide, evolve=evolve
)


def fold(events: Iterable[MessageEvent]) -> MessageState | None:
    return message_decider.fold(events)


def attached(command: AttachMedia, state: MessageState) -> tuple[MediaAttached, ...]:
    """The command's images as `state` holds them: one per distinct image, in the
    command's order, whether new or attached before."""
    known = {m.sha256: m for m in state.media}
    return tuple(known[sha] for sha in dict.fromkeys(i.sha256 for i in command.images))


def _attach(
    command: AttachMedia, state: MessageState, now: datetime
) -> tuple[MediaAttached, ...] | TooManyImages:
    """The same bytes attached again to the same message change nothing, and
    count nothing against the limit."""
    known = {m.sha256 for m in state.media}
    new: dict[str, MediaAttached] = {}
    for image in command.images:
        if image.sha256 in known or image.sha256 in new:
            continue
        new[image.sha256] = MediaAttached(
            message_id=state.message_id,
            sha256=image.sha256,
            content_type=image.content_type,
            format=image.format,
            size=image.size,
            width=image.width,
            height=image.height,
            attached_at=now,
        )
    if new and len(known) + len(new) > command.max_media:
        return TooManyImages(state.message_id, len(known), len(new), command.max_media)
    return tuple(new.values())


def _process(state: MessageState, now: datetime) -> tuple[SmsProcessed, ...]:
    """Processing happens once: a processed message gets nothing more."""
    if state.processed is not None:
        return ()
    counted = segment(state.message)
    return (
        SmsProcessed(
            message_id=state.message_id,
            encoding=counted.encoding,
            segments=counted.segments,
            from_region=PhoneNumber.parse(state.from_, "from").region,
            to_region=PhoneNumber.parse(state.to, "to").region,
            processed_at=now,
        ),
    )
