"""Fast, deterministic event logs for tests and benchmarks, written with COPY.

The rows are exactly what the command side would append (same event
structs, same encoding), but skip the HTTP path so that tens of thousands
of messages take a second, not a minute.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

import msgspec
import psycopg

from domain.commands import ProcessSms
from domain.decider import Rejection
from domain.events import Event, EventMetadata, MediaAttached, SmsProcessed, SmsReceived, stream_of
from domain.message import message_decider

T0 = datetime(2026, 11, 1, tzinfo=UTC)
RECIPIENTS = ("+447911123456", "+33612345678", "+4915112345678", "+14155550100")
TEXTS = ("Hello", "Your code is 123456", "Ça va? 👍", "On my way", "x" * 160)

_EVENT_IDS = UUID("0b7c4c1e-5c55-4a8e-9d0f-4a3f2a9b8e21")
COPY_COLUMNS = "stream_id, version, event_id, type, schema_version, data, metadata"
_COPY = f"COPY events ({COPY_COLUMNS}) FROM STDIN"


def message_id_at(at: datetime, rng: random.Random) -> UUID:
    """A version-7 id for a message received `at`, as the service makes them
    (RFC 9562: 48 bits of Unix milliseconds, then random bits). Ids sort by
    arrival, so a seeded log fills the indexes on them at their right edge, as
    the service does; random (version 4) ids would scatter every insert and
    every lookup of recent messages across the whole index."""
    millis = int(at.timestamp() * 1000)
    return UUID(
        int=(millis << 80)
        | (0x7 << 76)
        | (rng.getrandbits(12) << 64)
        | (0b10 << 62)
        | rng.getrandbits(62)
    )


def senders(count: int, rng: random.Random) -> list[str]:
    return [f"+1202555{rng.randrange(10_000):04d}" for _ in range(count)]


def message_events(
    count: int,
    *,
    seed: int = 7,
    processed: float = 1.0,
    media: float = 0.0,
    start: datetime = T0,
    from_: Iterable[str] | None = None,
) -> Iterator[tuple[str, int, Event]]:
    """(stream, version, event) for `count` messages, in a plausible arrival order.

    A share `processed` of them gets SmsProcessed, a share `media` one
    MediaAttached; each stream's later events follow its SmsReceived closely.
    Messages arrive 20 ms apart from `start`; their senders are `from_`, one
    per message, or else count / 5 senders taking turns.
    """
    rng = random.Random(seed)
    if from_ is None:
        pool = senders(max(1, count // 5), rng)
        from_ = (pool[i % len(pool)] for i in range(count))
    pending: list[tuple[str, int, Event]] = []
    for i, sender in zip(range(count), from_, strict=False):
        at = start + timedelta(milliseconds=i * 20)
        message_id = message_id_at(at, rng)
        received = SmsReceived(
            message_id=message_id,
            from_=sender,
            to=rng.choice(RECIPIENTS),
            message=rng.choice(TEXTS),
            received_at=at,
        )
        stream, version = stream_of(message_id), 1
        yield stream, version, received
        if rng.random() < media:
            version += 1
            pending.append((stream, version, attached(message_id, at, rng)))
        if rng.random() < processed:
            version += 1
            pending.append((stream, version, processing(received, at + timedelta(milliseconds=30))))
        # Later events land a few messages behind, as a busy log interleaves them.
        while len(pending) > 8:
            yield pending.pop(0)
    yield from pending


def processing(received: SmsReceived, at: datetime) -> SmsProcessed:
    """What the processing stage decides for a message received alone."""
    state = message_decider.fold([received])
    decided = message_decider.decide(ProcessSms(message_id=received.message_id), state, at)
    assert not isinstance(decided, Rejection)
    (done,) = decided
    assert isinstance(done, SmsProcessed)
    return done


def attached(message_id: UUID, at: datetime, rng: random.Random) -> MediaAttached:
    return MediaAttached(
        message_id=message_id,
        sha256=f"{rng.getrandbits(256):064x}",
        content_type="image/png",
        format="PNG",
        size=1234,
        width=64,
        height=64,
        attached_at=at + timedelta(milliseconds=10),
    )


_METADATA = msgspec.json.encode(
    EventMetadata(correlation_id=UUID(int=1), causation_id=UUID(int=1), actor="seed")
).decode()


def event_row(
    stream: str, version: int, event: Event, metadata: str = _METADATA
) -> tuple[Any, ...]:
    """The columns an append writes (`COPY_COLUMNS`); the trigger fills in the rest."""
    return (
        stream,
        version,
        uuid5(_EVENT_IDS, f"{stream}/{version}"),
        event.TYPE,
        event.SCHEMA_VERSION,
        msgspec.json.encode(event).decode(),
        metadata,
    )


def copy_events(conn: psycopg.Connection[Any], events: Iterator[tuple[str, int, Event]]) -> int:
    """COPY the events into the log in one transaction; returns how many."""
    written = 0
    with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY) as copy:
        for stream, version, event in events:
            copy.write_row(event_row(stream, version, event))
            written += 1
    return written


def seed_messages(url: str, count: int, **kwargs: Any) -> int:
    with psycopg.connect(url) as conn:
        return copy_events(conn, message_events(count, **kwargs))
