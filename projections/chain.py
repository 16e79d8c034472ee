"""The canonical encodings the event hashes and the seals cover (docs/audit.md).

Every value is written as text, each field as its UTF-8 byte length in
decimal, ':', the bytes and a line feed; the hash is the hex SHA-256 of the
fields in order. The same encoding is computed by the database when an
event is written (migrations: `event_hash`) and here when it is verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import msgspec


def field(value: bytes) -> bytes:
    return b"%d:%b\n" % (len(value), value)


def event_hash(
    previous: str,
    position: int,
    tx_id: int,
    stream_id: str,
    version: int,
    event_id: str,
    type_: str,
    schema_version: int,
    data: str,
    metadata: str,
    recorded_at_us: int,
) -> str:
    """`recorded_at_us`: microseconds since 1970-01-01 UTC; `data` and
    `metadata` as PostgreSQL prints jsonb (the bytes as stored, not re-encoded)."""
    return hashlib.sha256(
        b"".join(
            field(v.encode())
            for v in (
                previous,
                str(position),
                str(tx_id),
                stream_id,
                str(version),
                event_id,
                type_,
                str(schema_version),
                data,
                metadata,
                str(recorded_at_us),
            )
        )
    ).hexdigest()


class SealBody(msgspec.Struct, frozen=True, kw_only=True):
    """What a seal's hash covers; the signature is over that hash's 32 bytes."""

    number: int
    previous: str
    after_tx_id: int
    after_position: int
    to_tx_id: int
    to_position: int
    from_position: int
    events: int
    events_digest: str
    key_id: str
    sealed_at_us: int

    def hash(self) -> str:
        values = (
            self.number,
            self.previous,
            self.after_tx_id,
            self.after_position,
            self.to_tx_id,
            self.to_position,
            self.from_position,
            self.events,
            self.events_digest,
            self.key_id,
            self.sealed_at_us,
        )
        return hashlib.sha256(b"".join(field(str(v).encode()) for v in values)).hexdigest()


class EventsDigest:
    """The SHA-256 of the covered events' hashes (64 hex characters each), in reading order."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.count = 0

    def add(self, event_hash: bytes) -> None:
        """`event_hash`: the 64 hex digits, as ASCII bytes."""
        self._sha.update(event_hash)
        self.count += 1

    @property
    def add_uncounted(self) -> Callable[[bytes], None]:
        """`add` without the count, for a caller that counts (and adds to `count`) itself."""
        return self._sha.update

    def hexdigest(self) -> str:
        return self._sha.hexdigest()
