"""Commands: what a client asks for, imperative, already validated in shape."""

from __future__ import annotations

from uuid import UUID

import msgspec

from domain.errors import InvalidCommand, InvalidField
from domain.phone import PhoneNumber

MAX_LENGTH = 160
MAX_MEDIA_PER_MESSAGE = 10


class Image(msgspec.Struct, frozen=True, kw_only=True):
    """An image as judged from its bytes; the bytes themselves never enter the domain."""

    sha256: str
    content_type: str
    format: str
    """As Pillow names it: `JPEG`, `MPO` (a JPEG of several pictures), `PNG`, `GIF`, `WEBP`."""
    size: int
    width: int
    height: int


class ReceiveSms(msgspec.Struct, frozen=True, kw_only=True):
    """Take in a message a client sent (`POST /messages`)."""

    message_id: UUID
    from_: PhoneNumber
    to: PhoneNumber
    message: str

    @staticmethod
    def create(message_id: UUID, from_: str, to: str, message: str) -> ReceiveSms:
        """Validate every field and report all that are wrong, not just the first."""
        errors: list[InvalidField] = []
        parsed: dict[str, PhoneNumber] = {}
        for field, raw in (("from", from_), ("to", to)):
            try:
                parsed[field] = PhoneNumber.parse(raw, field)
            except InvalidField as error:
                errors.append(error)
        try:
            check_message(message)
        except InvalidField as error:
            errors.append(error)
        if errors:
            raise InvalidCommand(errors)
        return ReceiveSms(
            message_id=message_id, from_=parsed["from"], to=parsed["to"], message=message
        )


class AttachMedia(msgspec.Struct, frozen=True, kw_only=True):
    """Attach images, whose bytes are already safe in the store, to a message."""

    message_id: UUID
    images: tuple[Image, ...]
    max_media: int = MAX_MEDIA_PER_MESSAGE
    """The most images the message may have once these are attached (the operator's setting)."""


class ProcessSms(msgspec.Struct, frozen=True, kw_only=True):
    """Work out what a received message gets: its encoding, segments and regions."""

    message_id: UUID


MessageCommand = AttachMedia | ProcessSms
"""The commands decided on a message's own stream."""


def check_message(message: str, field: str = "message") -> None:
    """The text of a message: 1 to 160 code points, no NUL, valid Unicode."""
    length = len(message)
    if length == 0:
        raise InvalidField(field, "must not be empty")
    if length > MAX_LENGTH:
        raise InvalidField(field, f"is {length} characters long; at most {MAX_LENGTH} are allowed")
    if "\x00" in message:
        raise InvalidField(field, "must not contain NUL (\\u0000)")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(field, "must be valid Unicode (no lone surrogates)") from None
