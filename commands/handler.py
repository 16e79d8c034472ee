"""The one command handler: lock, clock, read, fold, decide, append, retry on conflict.

Every command decided on a stream goes through here (attaching images, the
processing stage); group commit (receive_sms.py) reuses the pieces for the
senders' windows. The decision itself is the decider's, a pure function; this
module only does the I/O around it, in one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from enum import IntEnum
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

import msgspec
import psycopg

from commands.event_store import Append, ConcurrencyConflict, Place, append, read_streams
from domain.decider import Decider, Rejection
from domain.events import AnyEvent, EventMetadata

C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E", bound=AnyEvent)

ATTEMPTS = 5


class Namespace(IntEnum):
    """What an advisory lock's keys name; each a seed of its own, so a stream and a
    sender that happen to share a name never share a lock."""

    STREAM = 4273
    SENDER = 7369


# Each key once, in key order, so writers holding several never wait on each
# other in a cycle (migrations/0023_lock_keys.sql; the write decided before its
# locks takes them through the same function).
_LOCK = "SELECT lock_keys(%s::text[], %s::bigint)"

CLOCK = "SELECT clock_timestamp()"


async def lock(
    conn: psycopg.AsyncConnection[Any], namespace: Namespace, keys: Sequence[str]
) -> None:
    """Hold these keys until the transaction ends. Writers that decide on what they
    read take them first: they queue behind each other instead of conflicting."""
    await conn.execute(_LOCK, (list(keys), int(namespace)))


class Intent(msgspec.Struct, Generic[C], frozen=True):
    """A command to decide on a stream, and what its events will carry.

    `event_ids`, when given, make the append idempotent: a retry that carries the
    same ids is refused as a duplicate instead of writing twice.
    """

    stream_id: str
    command: C
    metadata: EventMetadata
    event_ids: tuple[UUID, ...] = ()


class Handled(msgspec.Struct, Generic[S, E], frozen=True):
    decision: Sequence[E] | Rejection
    """What the decider said: the events appended (maybe none), or why not."""
    state: S
    """The stream's state with those events."""
    place: Place | None
    """The last event appended or, when none was, the last one read (None: no stream)."""


BeforeAppend = Callable[[psycopg.AsyncConnection[Any], Sequence[E]], Awaitable[None]]


async def decide_on_streams(
    conn: psycopg.AsyncConnection[Any],
    decider: Decider[C, S, E],
    intents: Sequence[Intent[C]],
    *,
    before_append: BeforeAppend[E] | None = None,
) -> list[Handled[S, E]]:
    """Decide each intent on its stream and append what was decided, in the caller's
    transaction. In pipeline mode the locks, the clock and the streams cost one
    round trip, and the append one more with the commit."""
    streams = [i.stream_id for i in intents]
    await lock(conn, Namespace.STREAM, streams)
    # Queued behind the locks, so the time is read and the streams are read once
    # they are held.
    clock = await conn.execute(CLOCK)
    recorded = await read_streams(conn, streams)
    row = await clock.fetchone()
    assert row is not None
    now = row[0]

    decided: list[tuple[S, Sequence[E] | Rejection, Place | None]] = []
    appends: list[Append] = []
    new: list[E] = []
    for intent in intents:
        stream = recorded.get(intent.stream_id, [])
        state = decider.fold(cast(E, r.decode_any()) for r in stream)
        decision = decider.decide(intent.command, state, now)
        read_to = max((r.place for r in stream), default=None)
        if not isinstance(decision, Rejection) and decision:
            appends.append(
                Append(
                    intent.stream_id,
                    stream[-1].version if stream else 0,
                    decision,
                    intent.metadata,
                    intent.event_ids,
                )
            )
            new.extend(decision)
            for event in decision:
                state = decider.evolve(state, event)
        decided.append((state, decision, read_to))
    if not appends:
        return [Handled(decision, state, place) for state, decision, place in decided]

    if before_append is not None:
        await before_append(conn, new)
    places = iter(await (await append(conn, appends)).places())
    handled = []
    for state, decision, read_to in decided:
        written = [] if isinstance(decision, Rejection) else [next(places) for _ in decision]
        handled.append(Handled(decision, state, max(written, default=read_to)))
    return handled


async def handle(
    conn: psycopg.AsyncConnection[Any],
    decider: Decider[C, S, E],
    intent: Intent[C],
    *,
    before_append: BeforeAppend[E] | None = None,
    attempts: int = ATTEMPTS,
) -> Handled[S, E]:
    """Decide one command in a transaction of its own, deciding again on a conflict
    (a writer that did not take the lock). `conn` must be in autocommit mode."""
    attempt = 1
    while True:
        try:
            async with conn.transaction():
                [handled] = await decide_on_streams(
                    conn, decider, [intent], before_append=before_append
                )
            return handled
        except ConcurrencyConflict:
            if attempt >= attempts:
                raise
            attempt += 1
