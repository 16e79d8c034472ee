"""AttachMedia: which of a command's images are new to the message.

The same bytes attached again to the same message change nothing; the
decision is a pure function of the command, the message's state (folded from
its stream) and the time.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from domain.commands import AttachMedia
from domain.errors import UnknownMessage
from domain.events import MediaAttached
from domain.message import MessageState


class Attached(msgspec.Struct, frozen=True):
    media: tuple[MediaAttached, ...]
    """One per distinct image of the command, in its order: new, or attached before."""
    new: tuple[MediaAttached, ...]
    """The events to append; empty when every image was attached already."""


def decide_attach(command: AttachMedia, state: MessageState | None, now: datetime) -> Attached:
    if state is None:
        raise UnknownMessage(command.message_id)
    known = {m.sha256: m for m in state.media}
    media: dict[str, MediaAttached] = {}
    new: list[MediaAttached] = []
    for image in command.images:
        if image.sha256 in media:
            continue
        event = known.get(image.sha256)
        if event is None:
            event = MediaAttached(
                message_id=state.message_id,
                sha256=image.sha256,
                content_type=image.content_type,
                size=image.size,
                width=image.width,
                height=image.height,
                attached_at=now,
            )
            new.append(event)
        media[image.sha256] = event
    return Attached(media=tuple(media.values()), new=tuple(new))
