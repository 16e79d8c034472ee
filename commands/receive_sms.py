"""ReceiveSms: decide deduplication and the rate limit under the senders' locks.

Several requests are handled in one transaction (group commit): one commit and
two round trips serve the whole batch, and every request is still decided by
the sender decider (domain/sender.py), in arrival order, against a window that
remembers what the batch itself accepted. The pieces are the command handler's
(commands/handler.py): the lock, the clock read after it, the append.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal
from uuid import UUID

import msgspec
import psycopg

from commands.event_store import Append, Appended, Place, append
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

# A separate statement from the lock: in READ COMMITTED each statement takes its
# snapshot when it starts, so this one sees every commit made before the lock
# was granted. The clock is read here too, after the lock, and only once.
# Each sender is its own probe of the primary key: OFFSET 0 keeps the inner
# query from being merged into a join, which the planner, on a window table it
# has no statistics for yet (or once saw nearly empty), could make a scan of
# the whole table, kept in the prepared statement's plan as the table grows.
# The age test is written on the row's side so that it only filters the
# sender's few rows: as `received_at > now - window` it could instead lead a
# scan of the index pruning uses, through every sender's last minute.
_WINDOW = """
WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now)
SELECT clock.now, w.sender, w.message_id, w.recipient, w.text, w.received_at
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

# One probe of the primary key per key, for the same reason as the window's.
_KEYS = """
SELECT k.actor, k.key, k.request_hash, k.outcome, k.message_id,
       k.quota_limit, k.quota_remaining, k.quota_reset
FROM unnest(%s::text[], %s::text[]) AS u (actor, key)
CROSS JOIN LATERAL (
    SELECT * FROM idempotency_keys AS k WHERE k.actor = u.actor AND k.key = u.key OFFSET 0
) AS k
"""

# The accepted events themselves, as one JSON document (see event_store._INSERT).
_REMEMBER = """
INSERT INTO sender_window (sender, received_at, message_id, recipient, text)
SELECT e."from", e.received_at, e.message_id, e."to", e.message
FROM jsonb_to_recordset(%s::jsonb)
     AS e("from" text, received_at timestamptz, message_id uuid, "to" text, message text)
"""

_STORE_KEYS = """
INSERT INTO idempotency_keys
    (actor, key, request_hash, outcome, message_id, quota_limit, quota_remaining, quota_reset)
SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::text[], %s::uuid[],
                     %s::int2[], %s::int2[], %s::int4[])
"""


class _FirstAnswer(msgspec.Struct, frozen=True):
    """What a key's first request came to, as kept with the key."""

    request_hash: bytes
    came: Came
    message_id: UUID
    quota: Quota | None

    @staticmethod
    def from_row(row: tuple[Any, ...]) -> _FirstAnswer:
        request_hash, came, message_id, limit, remaining, reset = row
        quota = None if limit is None else Quota(limit, remaining, reset)
        return _FirstAnswer(bytes(request_hash), came, message_id, quota)

    @staticmethod
    def of(key: IdempotencyKey, outcome: _Accepted | Duplicate) -> _FirstAnswer:
        if isinstance(outcome, _Accepted):
            return _FirstAnswer(key.request_hash, "new", outcome.event.message_id, outcome.quota)
        return _FirstAnswer(key.request_hash, "duplicate", outcome.original, outcome.quota)

    def replay_for(self, key: IdempotencyKey) -> Replay | KeyReuse:
        if self.request_hash != key.request_hash:
            return KeyReuse(key.key)
        return Replay(self.came, self.message_id, self.quota)

    def row(self, key: IdempotencyKey) -> tuple[Any, ...]:
        """The key's row, in the columns of `_STORE_KEYS`."""
        kept = (None,) * 3 if self.quota is None else msgspec.structs.astuple(self.quota)
        return (key.actor, key.key, self.request_hash, self.came, self.message_id, *kept)


class _Accepted(msgspec.Struct, frozen=True):
    """A new message whose place the commit has yet to tell."""

    event: SmsReceived
    quota: Quota


async def receive_batch(
    conn: psycopg.AsyncConnection[Any], requests: Sequence[ReceiveRequest]
) -> list[Outcome]:
    senders = sorted({r.command.from_.e164 for r in requests})
    keyed = [r.idempotency for r in requests if r.idempotency is not None]
    async with conn.pipeline(), conn.transaction():
        await lock(conn, Namespace.SENDER, senders)
        window_cur = await conn.execute(_WINDOW, (senders, RATE_WINDOW))
        keys_cur = None
        if keyed:
            keys_cur = await conn.execute(_KEYS, ([k.actor for k in keyed], [k.key for k in keyed]))
        rows = await window_cur.fetchall()
        known = (
            {}
            if keys_cur is None
            else {(r[0], r[1]): _FirstAnswer.from_row(r[2:]) for r in await keys_cur.fetchall()}
        )

        now = rows[0][0]
        recent: dict[str, list[Recent]] = defaultdict(list)
        for _, from_, message_id, to, message, received_at in rows:
            if from_ is not None:
                recent[from_].append(Recent(message_id, to, message, received_at))
        windows = {s: SenderWindow(tuple(recent[s])) for s in senders}

        decided: list[_Accepted | Duplicate | OverRateLimit | Replay | KeyReuse] = []
        appends: list[Append] = []
        new_keys: list[tuple[Any, ...]] = []
        for request in requests:
            key = request.idempotency
            prior = None if key is None else known.get((key.actor, key.key))
            if key is not None and prior is not None:
                decided.append(prior.replay_for(key))
                continue
            from_ = request.command.from_.e164
            decision = sender.decide(request.command, windows[from_], now)
            if isinstance(decision, OverRateLimit):
                decided.append(decision)
                continue
            outcome: _Accepted | Duplicate
            if isinstance(decision, Duplicate):
                outcome = decision
            else:
                (event,) = decision
                windows[from_] = sender.evolve(windows[from_], event)
                outcome = _Accepted(event, sender.quota(windows[from_], now))
                appends.append(Append(stream_of(event.message_id), 0, [event], request.metadata))
            decided.append(outcome)
            if key is not None:
                answer = _FirstAnswer.of(key, outcome)
                known[(key.actor, key.key)] = answer
                new_keys.append(answer.row(key))

        accepted_events = [a.event for a in decided if isinstance(a, _Accepted)]
        if accepted_events:
            await conn.execute(_REMEMBER, (msgspec.json.encode(accepted_events).decode(),))
        if new_keys:
            await conn.execute(_STORE_KEYS, tuple(map(list, zip(*new_keys, strict=True))))
        appended: Appended | None = await append(conn, appends) if appends else None
    # The places arrive with the commit: asking for them earlier would cost a round trip.
    places = iter([] if appended is None else await appended.places())
    return [
        NewMessage(d.event, d.quota, next(places)) if isinstance(d, _Accepted) else d
        for d in decided
    ]
