"""ReceiveSms: decide deduplication and the rate limit under the senders' locks.

Several requests are handled in one transaction (group commit): one commit and
two round trips serve the whole batch, and every request is still decided by
the same pure `decide_receive`, in arrival order, against a window that
remembers what the batch itself accepted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import msgspec
import psycopg

from commands.event_store import Append, Appended, Recorded, append
from domain.commands import ReceiveSms
from domain.events import EventMetadata, SmsReceived, stream_of
from domain.sms import (
    RATE_WINDOW,
    Accepted,
    Decision,
    Duplicate,
    Quota,
    RateLimited,
    SenderWindow,
    Sent,
    decide_receive,
    remember,
)


class IdempotencyKey(msgspec.Struct, frozen=True):
    actor: str
    key: str
    request_hash: bytes


class ReceiveRequest(msgspec.Struct, frozen=True):
    command: ReceiveSms
    metadata: EventMetadata
    idempotency: IdempotencyKey | None = None


class Replayed(msgspec.Struct, frozen=True):
    """The key was used before with the same body: answer as the first time.

    `quota` is the one the first answer reported, Reset included: a replay
    repeats that answer, it does not report the quota anew. None for keys
    stored before the quota was kept with them.
    """

    status: int
    message_id: UUID
    quota: Quota | None = None


class KeyReused(msgspec.Struct, frozen=True):
    """The key was used before with a different body."""

    key: str


Outcome = Recorded[Accepted] | Duplicate | RateLimited | Replayed | KeyReused

# Locks are taken in ascending key order so that concurrent batches, each
# holding several senders, can never wait on each other in a cycle.
_LOCK = """
SELECT pg_advisory_xact_lock(k)
FROM (SELECT DISTINCT hashtextextended(s, 7369) AS k
      FROM unnest(%s::text[]) AS s ORDER BY 1) AS keys
"""

# A separate statement from the lock: in READ COMMITTED each statement takes its
# snapshot when it starts, so this one sees every commit made before the lock
# was granted. The clock is read here too, after the lock, and only once.
_WINDOW = """
WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now)
SELECT clock.now, w.sender, w.message_id, w.recipient, w.text, w.received_at
FROM clock LEFT JOIN sender_window AS w
  ON w.sender = ANY(%s) AND w.received_at > clock.now - %s
ORDER BY w.received_at
"""

_KEYS = """
SELECT actor, key, request_hash, status, message_id, quota_limit, quota_remaining, quota_reset
FROM idempotency_keys
WHERE (actor, key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
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
    (actor, key, request_hash, status, message_id, quota_limit, quota_remaining, quota_reset)
SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[], %s::int2[], %s::uuid[],
                     %s::int2[], %s::int2[], %s::int4[])
"""


class _FirstAnswer(msgspec.Struct, frozen=True):
    """What a key's first request was answered, as kept with the key."""

    request_hash: bytes
    status: int
    message_id: UUID
    quota: Quota | None

    @staticmethod
    def from_row(row: tuple[Any, ...]) -> _FirstAnswer:
        request_hash, status, message_id, limit, remaining, reset = row
        quota = None if limit is None else Quota(limit, remaining, reset)
        return _FirstAnswer(bytes(request_hash), status, message_id, quota)

    @staticmethod
    def of(key: IdempotencyKey, decision: Accepted | Duplicate) -> _FirstAnswer:
        if isinstance(decision, Accepted):
            return _FirstAnswer(key.request_hash, 201, decision.event.message_id, decision.quota)
        return _FirstAnswer(key.request_hash, 200, decision.original, decision.quota)

    def replay_for(self, key: IdempotencyKey) -> Replayed | KeyReused:
        if self.request_hash != key.request_hash:
            return KeyReused(key.key)
        return Replayed(self.status, self.message_id, self.quota)

    def row(self, key: IdempotencyKey) -> tuple[Any, ...]:
        """The key's row, in the columns of `_STORE_KEYS`."""
        quota = (None,) * 3 if self.quota is None else msgspec.structs.astuple(self.quota)
        return (key.actor, key.key, self.request_hash, self.status, self.message_id, *quota)


async def receive_batch(
    conn: psycopg.AsyncConnection[Any], requests: Sequence[ReceiveRequest]
) -> list[Outcome]:
    senders = sorted({r.command.sender.e164 for r in requests})
    keyed = [r.idempotency for r in requests if r.idempotency is not None]
    async with conn.pipeline(), conn.transaction():
        await conn.execute(_LOCK, (senders,))
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
        sent: dict[str, list[Sent]] = defaultdict(list)
        for _, sender, message_id, recipient, text, received_at in rows:
            if sender is not None:
                sent[sender].append(Sent(message_id, recipient, text, received_at))
        windows = {s: SenderWindow(tuple(sent[s])) for s in senders}

        decisions: list[Decision | Replayed | KeyReused] = []
        accepted: list[SmsReceived] = []
        appends: list[Append] = []
        new_keys: list[tuple[Any, ...]] = []
        for request in requests:
            key = request.idempotency
            prior = None if key is None else known.get((key.actor, key.key))
            if key is not None and prior is not None:
                decisions.append(prior.replay_for(key))
                continue
            sender = request.command.sender.e164
            decision = decide_receive(request.command, windows[sender], now)
            decisions.append(decision)
            if isinstance(decision, Accepted):
                windows[sender] = remember(windows[sender], decision.event)
                accepted.append(decision.event)
                appends.append(
                    Append(
                        stream_of(decision.event.message_id), 0, [decision.event], request.metadata
                    )
                )
            if key is not None and isinstance(decision, Accepted | Duplicate):
                answer = _FirstAnswer.of(key, decision)
                known[(key.actor, key.key)] = answer
                new_keys.append(answer.row(key))

        if accepted:
            await conn.execute(_REMEMBER, (msgspec.json.encode(accepted).decode(),))
        if new_keys:
            await conn.execute(_STORE_KEYS, tuple(map(list, zip(*new_keys, strict=True))))
        appended: Appended | None = await append(conn, appends) if appends else None
    # The places arrive with the commit: asking for them earlier would cost a round trip.
    places = iter([] if appended is None else await appended.places())
    return [Recorded(d, next(places)) if isinstance(d, Accepted) else d for d in decisions]
