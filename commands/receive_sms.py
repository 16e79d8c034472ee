"""ReceiveSms: decide deduplication and the rate limit on the senders' windows.

Several requests are handled together (group commit): every request is still
decided by the sender decider (domain/sender.py), in arrival order, against a
window that remembers what the batch itself accepted. A batch costs two
statements and no transaction: the windows, the idempotency keys and the
clock are read without a lock; the decisions are made; then
one statement takes the senders' locks, checks that no window gained a row
the decisions did not see, and writes the window rows, the idempotency keys
and the events. When the check fails (a concurrent batch for one of the
senders came first), the batch is decided again the way every other command
is (commands/handler.py): under the locks it takes first, in a transaction,
where nothing can change under it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import msgspec
import psycopg
from psycopg import errors

from commands.event_store import (
    INSERT_EVENTS,
    Append,
    Place,
    conflict_of,
    encode_appends,
    places_in,
)
from commands.handler import Namespace, lock
from domain import sender
from domain.commands import ReceiveSms
from domain.events import EventMetadata, SmsReceived, stream_of
from domain.sender import RATE_WINDOW, Duplicate, OverRateLimit, Quota, Recent, SenderWindow


class IdempotencyKey(msgspec.Struct, frozen=True):
    actor: str
    key: str
    request_hash: bytes


class ReceiveRequest(msgspec.Struct, frozen=True):
    command: ReceiveSms
    metadata: EventMetadata
    idempotency: IdempotencyKey | None = None


class NewMessage(msgspec.Struct, frozen=True):
    """The message was accepted: its event, the sender's quota with it, and the
    event's place in the log."""

    event: SmsReceived
    quota: Quota
    place: Place


Came = Literal["new", "duplicate"]


class Replay(msgspec.Struct, frozen=True):
    """The key was used before with the same body: answer as the first time.

    `quota` is the one the first answer reported, Reset included: a replay
    repeats that answer, it does not report the quota anew. None for keys
    stored before the quota was kept with them.
    """

    came: Came
    """What the first request came to: a new message, or a duplicate of one."""
    message_id: UUID
    quota: Quota | None = None


class KeyReuse(msgspec.Struct, frozen=True):
    """The key was used before with a different body."""

    key: str


Outcome = NewMessage | Duplicate | OverRateLimit | Replay | KeyReuse

# The windows, the clock and the batch's idempotency keys, read in one
# statement and one snapshot. On the locked path a separate statement from the
# lock: in READ COMMITTED each statement takes its snapshot when it starts, so
# this one sees every commit made before the lock was granted.
# Each sender is its own probe of the primary key: OFFSET 0 keeps the inner
# query from being merged into a join, which the planner, on a window table it
# has no statistics for yet (or once saw nearly empty), could make a scan of
# the whole table, kept in the prepared statement's plan as the table grows.
# The age test is written on the row's side so that it only filters the
# sender's few rows: as `received_at > now - window` it could instead lead a
# scan of the index pruning uses, through every sender's last minute.
# `{keys}` is NULL for a batch without keys, else their rows as one JSON
# document, on the first row of the result only (a batch of 64 keyed retries
# would otherwise carry it on each of its senders' window rows).
_WINDOW = """
WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now)
SELECT clock.now, {keys}, w.sender, w.message_id, w.recipient, w.text, w.received_at
FROM clock LEFT JOIN LATERAL (
    SELECT w.* FROM unnest(%s::text[]) AS s (sender)
    CROSS JOIN LATERAL (
        SELECT * FROM sender_window AS w
        WHERE w.sender = s.sender AND w.received_at + %s > clock.now
        OFFSET 0
    ) AS w
) AS w ON true
ORDER BY w.received_at
"""

# One probe of the primary key per key, for the same reason as the window's;
# the rows in `_KeyRow`'s shape (the hash in base64, on one line).
_KEYS = """(
    SELECT json_agg(json_build_object(
        'actor', k.actor, 'key', k.key,
        'request_hash', translate(encode(k.request_hash, 'base64'), E'\\n', ''),
        'outcome', k.outcome, 'message_id', k.message_id, 'quota_limit', k.quota_limit,
        'quota_remaining', k.quota_remaining, 'quota_reset', k.quota_reset))::text
    FROM unnest(%s::text[], %s::text[]) AS u (actor, key)
    CROSS JOIN LATERAL (
        SELECT * FROM idempotency_keys AS k WHERE k.actor = u.actor AND k.key = u.key OFFSET 0
    ) AS k
)"""
_WINDOW_ALONE = _WINDOW.format(keys="NULL::text")
_WINDOW_AND_KEYS = _WINDOW.format(
    keys=f"CASE WHEN row_number() OVER (ORDER BY w.received_at) = 1 THEN {_KEYS} END"
)

# A read without the locks older than this is read again: a message's time is
# its read's. (The locked path reads under the locks it writes under, in one
# transaction, whose idle time the pool's settings cut off.)
FRESH = timedelta(seconds=5)

# The batch's writes, in one statement once `gate` has passed. The gate
# (migrations/0022_optimistic_window.sql) takes the locks of the senders that
# accept a message, as `lock` takes them (0023), and raises if any of their
# windows gained a row since the read; every insert draws its rows through the
# gate's one row, so none is written before it has passed, and nothing at all
# if it raises. With no senders (a batch that stores only keys) it checks only
# that the read is fresh; the locked path, whose locks are held already,
# passes neither senders nor a bound. The window rows are the accepted events
# themselves, as one JSON document (see event_store).
_ACCEPT = """
WITH gate AS MATERIALIZED (
    SELECT senders_unchanged(%s::text[], %s::bigint, %s::uuid[], %s::timestamptz, %s::interval,
                             %s::interval)
),
remembered AS (
    INSERT INTO sender_window (sender, received_at, message_id, recipient, text)
    SELECT e."from", e.received_at, e.message_id, e."to", e.message
    FROM gate, jsonb_to_recordset(%s::jsonb)
         AS e("from" text, received_at timestamptz, message_id uuid, "to" text, message text)
),
kept AS (
    INSERT INTO idempotency_keys
        (actor, key, request_hash, outcome, message_id, quota_limit, quota_remaining, quota_reset)
    SELECT k.actor, k.key, decode(k.request_hash, 'base64'), k.outcome, k.message_id,
           k.quota_limit, k.quota_remaining, k.quota_reset
    FROM gate, jsonb_to_recordset(%s::jsonb)
         AS k (actor text, key text, request_hash text, outcome text, message_id uuid,
               quota_limit int2, quota_remaining int2, quota_reset int4)
)""" + INSERT_EVENTS.format(gate="gate, ")


class _FirstAnswer(msgspec.Struct, frozen=True):
    """What a key's first request came to, as kept with the key."""

    request_hash: bytes
    came: Came
    message_id: UUID
    quota: Quota | None

    @staticmethod
    def kept(row: _KeyRow) -> _FirstAnswer:
        """As read back: without a quota for a key stored before quotas were kept
        (the three columns are written together, all or none)."""
        limit, remaining, reset = row.quota_limit, row.quota_remaining, row.quota_reset
        quota = (
            None
            if limit is None or remaining is None or reset is None
            else Quota(limit, remaining, reset)
        )
        return _FirstAnswer(row.request_hash, row.outcome, row.message_id, quota)

    @staticmethod
    def of(key: IdempotencyKey, outcome: _Accepted | Duplicate) -> _FirstAnswer:
        if isinstance(outcome, _Accepted):
            return _FirstAnswer(key.request_hash, "new", outcome.event.message_id, outcome.quota)
        return _FirstAnswer(key.request_hash, "duplicate", outcome.original, outcome.quota)

    def replay_for(self, key: IdempotencyKey) -> Replay | KeyReuse:
        if self.request_hash != key.request_hash:
            return KeyReuse(key.key)
        return Replay(self.came, self.message_id, self.quota)

    def row(self, key: IdempotencyKey) -> _KeyRow:
        """The key's row, as `_ACCEPT` stores it."""
        limit, remaining, reset = (
            (None,) * 3 if self.quota is None else msgspec.structs.astuple(self.quota)
        )
        return _KeyRow(
            key.actor,
            key.key,
            self.request_hash,
            self.came,
            self.message_id,
            limit,
            remaining,
            reset,
        )


class _KeyRow(msgspec.Struct, frozen=True):
    """A key's row in `idempotency_keys`, as `_ACCEPT` takes it and the window's
    read gives it back: one JSON document (one parameter, where eight arrays
    cost the client twice its time; the hash as base64, as msgspec writes
    bytes)."""

    actor: str
    key: str
    request_hash: bytes
    outcome: Came
    message_id: UUID
    quota_limit: int | None
    quota_remaining: int | None
    quota_reset: int | None


_key_rows = msgspec.json.Decoder(list[_KeyRow])


class _Accepted(msgspec.Struct, frozen=True):
    """A new message whose place the commit has yet to tell."""

    event: SmsReceived
    quota: Quota


class _Read(msgspec.Struct, frozen=True):
    """The senders' windows and keys as read, and the database's clock at the read."""

    now: datetime
    recent: dict[str, list[Recent]]
    known: dict[tuple[str, str], _FirstAnswer]


class _Decided(msgspec.Struct, frozen=True):
    """The batch's decisions, in request order, and what they write."""

    outcomes: list[_Accepted | Duplicate | OverRateLimit | Replay | KeyReuse]
    appends: list[Append]
    new_keys: list[_KeyRow]

    @property
    def accepted(self) -> list[SmsReceived]:
        return [a.event for a in self.outcomes if isinstance(a, _Accepted)]


async def receive_batch(
    conn: psycopg.AsyncConnection[Any], requests: Sequence[ReceiveRequest]
) -> list[Outcome]:
    """Decide and store a batch on windows read without a lock; when the write
    finds one of them changed, again under the locks. `conn` must be in
    autocommit mode."""
    try:
        return await _receive(conn, requests, locked=False)
    except errors.SerializationFailure:
        async with conn.transaction():
            return await _receive(conn, requests, locked=True)


async def _receive(
    conn: psycopg.AsyncConnection[Any], requests: Sequence[ReceiveRequest], *, locked: bool
) -> list[Outcome]:
    senders = sorted({r.command.from_.e164 for r in requests})
    if locked:
        await lock(conn, Namespace.SENDER, senders)
    read = await _read(conn, senders, [r.idempotency for r in requests if r.idempotency])
    decided = _decide(requests, read)
    places = iter(await _write(conn, read, decided, locked=locked))
    return [
        NewMessage(d.event, d.quota, next(places)) if isinstance(d, _Accepted) else d
        for d in decided.outcomes
    ]


async def _write(
    conn: psycopg.AsyncConnection[Any], read: _Read, decided: _Decided, *, locked: bool
) -> list[Place]:
    """Store what the batch decided, checked first unless `locked`; the places of
    its events."""
    accepted = decided.accepted
    if not accepted and not decided.new_keys:
        return []
    # Only a sender that accepts a message can be decided wrong on a stale window:
    # a duplicate or a refusal stays true whatever was accepted since.
    checked = [] if locked else sorted({e.from_ for e in accepted})
    seen = [r.message_id for s in checked for r in read.recent.get(s, ())]
    document, event_ids = encode_appends(decided.appends)
    try:
        cur = await conn.execute(
            _ACCEPT,
            (
                checked,
                int(Namespace.SENDER),
                seen,
                read.now,
                RATE_WINDOW,
                None if locked else FRESH,
                msgspec.json.encode(accepted).decode(),
                msgspec.json.encode(decided.new_keys).decode(),
                document,
            ),
        )
    except errors.UniqueViolation as error:
        raise conflict_of(error, decided.appends) from error
    return places_in(await cur.fetchall(), event_ids)


async def _read(
    conn: psycopg.AsyncConnection[Any], senders: list[str], keyed: list[IdempotencyKey]
) -> _Read:
    if keyed:
        cur = await conn.execute(
            _WINDOW_AND_KEYS,
            ([k.actor for k in keyed], [k.key for k in keyed], senders, RATE_WINDOW),
        )
    else:
        cur = await conn.execute(_WINDOW_ALONE, (senders, RATE_WINDOW))
    rows = await cur.fetchall()
    document = next((row[1] for row in rows if row[1] is not None), None)
    found = [] if document is None else _key_rows.decode(document)
    recent: dict[str, list[Recent]] = defaultdict(list)
    for _, _, from_, message_id, to, message, received_at in rows:
        if from_ is not None:
            recent[from_].append(Recent(message_id, to, message, received_at))
    known = {(k.actor, k.key): _FirstAnswer.kept(k) for k in found}
    return _Read(rows[0][0], dict(recent), known)


def _decide(requests: Sequence[ReceiveRequest], read: _Read) -> _Decided:
    """Each request in arrival order, on windows that remember what the batch accepted."""
    windows = {
        r.command.from_.e164: SenderWindow(tuple(read.recent.get(r.command.from_.e164, ())))
        for r in requests
    }
    known = dict(read.known)
    decided = _Decided([], [], [])
    for request in requests:
        key = request.idempotency
        prior = None if key is None else known.get((key.actor, key.key))
        if key is not None and prior is not None:
            decided.outcomes.append(prior.replay_for(key))
            continue
        from_ = request.command.from_.e164
        decision = sender.decide(request.command, windows[from_], read.now)
        if isinstance(decision, OverRateLimit):
            decided.outcomes.append(decision)
            continue
        outcome: _Accepted | Duplicate
        if isinstance(decision, Duplicate):
            outcome = decision
        else:
            (event,) = decision
            windows[from_] = sender.evolve(windows[from_], event)
            outcome = _Accepted(event, sender.quota(windows[from_], read.now))
            decided.appends.append(
                Append(stream_of(event.message_id), 0, [event], request.metadata)
            )
        decided.outcomes.append(outcome)
        if key is not None:
            answer = _FirstAnswer.of(key, outcome)
            known[(key.actor, key.key)] = answer
            decided.new_keys.append(answer.row(key))
    return decided
