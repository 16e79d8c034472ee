"""Commands: what a client asks for, imperative, already validated in shape."""

from __future__ import annotations

from uuid import UUID

import msgspec

from domain.errors import InvalidCommand, InvalidField
from domain.phone import PhoneNumber

MAX_TEXT = 160


class Image(msgspec.Struct, frozen=True, kw_only=True):
    """An image as judged from its bytes; the bytes themselves never enter the domain."""

    sha256: str
    content_type: str
    size: int
    width: int
    height: int


class AttachMedia(msgspec.Struct, frozen=True, kw_only=True):
    message_id: UUID
    images: tuple[Image, ...]


class ReceiveSms(msgspec.Struct, frozen=True, kw_only=True):
    message_id: UUID
    sender: PhoneNumber
    recipient: PhoneNumber
    text: str

    @staticmethod
    def create(message_id: UUID, sender: str, recipient: str, text: str) -> ReceiveSms:
        """Validate every field and report all that are wrong, not just the first."""
        errors: list[InvalidField] = []
        parsed: dict[str, PhoneNumber] = {}
        for field, raw in (("from", sender), ("to", recipient)):
            try:
                parsed[field] = PhoneNumber.parse(raw, field)
            except InvalidField as error:
                errors.append(error)
        try:
            check_text(text)
        except InvalidField as error:
            errors.append(error)
        if errors:
            raise InvalidCommand(errors)
        return ReceiveSms(
            message_id=message_id, sender=parsed["from"], recipient=parsed["to"], text=text
        )


def check_text(text: str, field: str = "message") -> None:
    length = len(text)
    if length == 0:
        raise InvalidField(field, "must not be empty")
    if length > MAX_TEXT:
        raise InvalidField(field, f"is {length} characters long; at most {MAX_TEXT} are allowed")
    if "\x00" in text:
        raise InvalidField(field, "must not contain NUL (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(field, "must be valid Unicode (no lone surrogates)") from None
