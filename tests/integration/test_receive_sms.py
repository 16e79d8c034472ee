"""ReceiveSms on real PostgreSQL: the window, idempotency, and racing transactions."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from commands import receive_sms
from commands.event_store import Place
from commands.group_commit import GroupCommitter
from commands.handler import Namespace, lock
from commands.receive_sms import (
    IdempotencyKey,
    KeyReuse,
    NewMessage,
    Outcome,
    ReceiveRequest,
    Replay,
    receive_batch,
)
from domain.commands import ReceiveSms
from domain.events import EventMetadata
from domain.sender import Duplicate, OverRateLimit
from tests.support.media import eventually
from tests.support.phones import random_phone

RECIPIENT = "+447911123456"


def request(sender: str, text: str = "Hello", key: str | None = None) -> ReceiveRequest:
    command = ReceiveSms.create(uuid7(), sender, RECIPIENT, text)
    command_id = uuid7()
    idempotency = None if key is None else IdempotencyKey("tester", key, text.encode())
    return ReceiveRequest(
        command, EventMetadata(correlation_id=command_id, causation_id=command_id), idempotency
    )


async def stored_for(pool: AsyncConnectionPool, sender: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM events WHERE type = 'SmsReceived' AND data->>'from' = %s",
            (sender,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def one(pool: AsyncConnectionPool, req: ReceiveRequest) -> Outcome:
    async with pool.connection() as conn:
        [outcome] = await receive_batch(conn, [req])
    return outcome


async def test_a_repeat_within_two_seconds_is_the_first_message(pool: AsyncConnectionPool) -> None:
    sender = random_phone()
    first = await one(pool, request(sender))
    again = await one(pool, request(sender))
    assert isinstance(first, NewMessage)
    assert isinstance(again, Duplicate)
    assert again.original == first.event.message_id
    assert await stored_for(pool, sender) == 1


async def test_the_database_clock_stamps_received_at(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT clock_timestamp()")
        row = await cur.fetchone()
    assert row is not None
    outcome = await one(pool, request(random_phone()))
    assert isinstance(outcome, NewMessage)
    assert 0 <= (outcome.event.received_at - row[0]).total_seconds() < 5


async def test_a_batch_is_decided_in_order_against_what_it_accepted(
    pool: AsyncConnectionPool,
) -> None:
    sender = random_phone()
    requests = [request(sender, f"text {i}") for i in range(7)] + [request(sender, "text 0")]
    async with pool.connection() as conn:
        outcomes = await receive_batch(conn, requests)
    names = [type(o).__name__ for o in outcomes]
    assert names == ["NewMessage"] * 5 + ["OverRateLimit"] * 2 + ["Duplicate"]
    assert await stored_for(pool, sender) == 5
    # Each accepted message is told its event's place in the log: one
    # transaction, so one tx_id, and the positions in the order of the batch.
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT data->>'message_id', tx_id::text, position FROM events"
            " WHERE type = 'SmsReceived' AND data->>'from' = %s",
            (sender,),
        )
        logged = {UUID(m): Place(int(tx), pos) for m, tx, pos in await cur.fetchall()}
    places = {o.event.message_id: o.place for o in outcomes if isinstance(o, NewMessage)}
    assert places == logged
    assert len({p.tx_id for p in places.values()}) == 1
    assert sorted(places.values()) == list(places.values())


async def test_a_key_replays_its_first_answer_and_refuses_another_body(
    pool: AsyncConnectionPool,
) -> None:
    sender, key = random_phone(), f"key-{uuid7()}"
    first = await one(pool, request(sender, "once", key))
    assert isinstance(first, NewMessage)
    await one(pool, request(sender, "another"))
    replay = await one(pool, request(sender, "once", key))
    # The quota as first reported, not as it stands after "another".
    assert replay == Replay("new", first.event.message_id, first.quota)
    assert isinstance(await one(pool, request(sender, "other body", key)), KeyReuse)
    assert await stored_for(pool, sender) == 2


async def test_a_request_hash_longer_than_a_base64_line_is_read_back_whole(
    pool: AsyncConnectionPool,
) -> None:
    # PostgreSQL's base64 breaks lines every 76 characters (57 bytes).
    sender, key, body = random_phone(), f"key-{uuid7()}", "x" * 100
    first = await one(pool, request(sender, body, key))
    assert isinstance(first, NewMessage)
    replay = await one(pool, request(sender, body, key))
    assert replay == Replay("new", first.event.message_id, first.quota)


async def test_a_batchs_keys_come_back_once_not_on_every_window_row(
    pool: AsyncConnectionPool,
) -> None:
    senders = [random_phone() for _ in range(3)]
    keys = [f"key-{uuid7()}" for _ in senders]
    for sender, key in zip(senders, keys, strict=True):
        await one(pool, request(sender, "first", key))
        await one(pool, request(sender, "second"))
    async with pool.connection() as conn:
        cur = await conn.execute(
            receive_sms._WINDOW_AND_KEYS,
            (["tester"] * 3, keys, senders, receive_sms.RATE_WINDOW),
        )
        rows = await cur.fetchall()
    assert len(rows) == 6
    [document] = [row[1] for row in rows if row[1] is not None]
    assert sorted(k["key"] for k in json.loads(document)) == sorted(keys)


async def test_a_key_used_twice_in_one_batch_is_replayed_within_it(
    pool: AsyncConnectionPool,
) -> None:
    sender, key = random_phone(), f"key-{uuid7()}"
    async with pool.connection() as conn:
        first, second = await receive_batch(
            conn, [request(sender, "x", key), request(sender, "x", key)]
        )
    assert isinstance(first, NewMessage)
    assert second == Replay("new", first.event.message_id, first.quota)


async def test_a_key_first_answered_as_a_duplicate_replays_that_answer(
    pool: AsyncConnectionPool,
) -> None:
    sender, key = random_phone(), f"key-{uuid7()}"
    original = await one(pool, request(sender, "twice"))
    duplicate = await one(pool, request(sender, "twice", key))
    assert isinstance(original, NewMessage)
    assert isinstance(duplicate, Duplicate)
    replay = await one(pool, request(sender, "twice", key))
    assert replay == Replay("duplicate", original.event.message_id, duplicate.quota)


async def test_a_key_stored_without_its_quota_replays_without_one(
    pool: AsyncConnectionPool,
) -> None:
    sender, key = random_phone(), f"key-{uuid7()}"
    first = await one(pool, request(sender, "old", key))
    assert isinstance(first, NewMessage)
    # As a key stored before the quota was kept with it.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE idempotency_keys SET quota_limit = NULL, quota_remaining = NULL,"
            " quota_reset = NULL WHERE key = %s",
            (key,),
        )
    assert await one(pool, request(sender, "old", key)) == Replay("new", first.event.message_id)


async def test_a_rate_limited_request_stores_no_key(pool: AsyncConnectionPool) -> None:
    sender = random_phone()
    async with pool.connection() as conn:
        await receive_batch(conn, [request(sender, f"fill {i}") for i in range(5)])
    limited = await one(pool, request(sender, "sixth", "k-limited"))
    assert isinstance(limited, OverRateLimit)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM idempotency_keys WHERE key = 'k-limited'")
        assert await cur.fetchone() == (0,)


@pytest.mark.parametrize(("max_batch", "concurrency"), [(1, 20), (4, 4)])
async def test_twenty_identical_requests_at_once_store_exactly_one(
    pool: AsyncConnectionPool, max_batch: int, concurrency: int
) -> None:
    sender = random_phone()
    committer = GroupCommitter(pool, receive_batch, max_batch=max_batch, concurrency=concurrency)
    outcomes = await asyncio.gather(*(committer.submit(request(sender)) for _ in range(20)))
    accepted = [o for o in outcomes if isinstance(o, NewMessage)]
    assert len(accepted) == 1
    assert all(
        isinstance(o, Duplicate) and o.original == accepted[0].event.message_id
        for o in outcomes
        if o is not accepted[0]
    )
    assert await stored_for(pool, sender) == 1


@pytest.mark.parametrize(("max_batch", "concurrency"), [(1, 20), (4, 4)])
async def test_twenty_different_requests_at_once_store_exactly_five(
    pool: AsyncConnectionPool, max_batch: int, concurrency: int
) -> None:
    sender = random_phone()
    committer = GroupCommitter(pool, receive_batch, max_batch=max_batch, concurrency=concurrency)
    outcomes = await asyncio.gather(
        *(committer.submit(request(sender, f"message {i}")) for i in range(20))
    )
    assert Counter(type(o).__name__ for o in outcomes) == {"NewMessage": 5, "OverRateLimit": 15}
    assert await stored_for(pool, sender) == 5


async def test_batches_locking_overlapping_senders_never_deadlock(
    pool: AsyncConnectionPool,
) -> None:
    senders = [random_phone() for _ in range(6)]

    async def batch(seed: int) -> list[Outcome]:
        order = random.Random(seed).sample(senders, len(senders))
        async with pool.connection() as conn:
            return await receive_batch(conn, [request(s, f"batch {seed}") for s in order])

    results = await asyncio.wait_for(asyncio.gather(*(batch(i) for i in range(12))), 30)
    per_sender = Counter()
    for outcomes in results:
        for o in outcomes:
            if isinstance(o, NewMessage):
                per_sender[o.event.from_] += 1
    assert per_sender == dict.fromkeys(senders, 5)


class Interrupted(psycopg.AsyncConnection[Any]):
    """A connection on which `meanwhile` runs once, after a batch has read its
    windows and before its write: a concurrent batch, made to come first."""

    meanwhile: Callable[[], Awaitable[None]] | None = None
    writes: int = 0

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(query, str) and query.lstrip().startswith("WITH gate AS"):
            self.writes += 1
            if self.meanwhile is not None:
                meanwhile, self.meanwhile = self.meanwhile, None
                await meanwhile()
        return await super().execute(query, params, **kwargs)


async def interrupted(
    database_url: str, batch: list[ReceiveRequest], meanwhile: Callable[[], Awaitable[None]]
) -> tuple[list[Outcome], int]:
    """`batch`'s outcomes with `meanwhile` run between its read and its write,
    and the writes it took."""
    async with await Interrupted.connect(database_url, autocommit=True) as conn:
        conn.meanwhile = meanwhile
        outcomes = await receive_batch(conn, batch)
        return outcomes, conn.writes


async def test_a_duplicate_committed_after_the_read_is_found_before_the_write(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    sender = random_phone()
    came_first: list[Outcome] = []

    async def the_same_message_first() -> None:
        came_first.append(await one(pool, request(sender, "same")))

    [outcome], writes = await interrupted(
        database_url, [request(sender, "same")], the_same_message_first
    )
    [first] = came_first
    assert isinstance(first, NewMessage)
    # Its windows read without the other message, the batch was decided again
    # under the locks, where that message is seen.
    assert outcome == Duplicate(first.event.message_id, outcome.quota)
    assert writes == 1
    assert await stored_for(pool, sender) == 1


async def test_a_duplicate_committed_while_the_write_waits_for_its_lock_is_found(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    """The write's check reads the windows once it holds the locks, not as they
    stood when the statement began: a batch holding a sender's lock commits
    while the write waits for it."""
    sender, original = random_phone(), uuid7()
    holder = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    released: list[asyncio.Task[None]] = []

    async def a_lock_is_waited_for() -> bool:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            return await cur.fetchone() != (0,)

    async def commit_once_waited_for() -> None:
        try:
            await eventually(a_lock_is_waited_for)
        finally:
            # Whatever happened, the write must not wait for ever.
            await holder.execute("COMMIT")

    async def hold_the_lock_with_the_same_message() -> None:
        await holder.execute("BEGIN")
        await lock(holder, Namespace.SENDER, [sender])
        await holder.execute(
            "INSERT INTO sender_window (sender, received_at, message_id, recipient, text)"
            " VALUES (%s, clock_timestamp(), %s, %s, 'same')",
            (sender, original, RECIPIENT),
        )
        released.append(asyncio.create_task(commit_once_waited_for()))

    async with holder:
        [outcome], writes = await interrupted(
            database_url, [request(sender, "same")], hold_the_lock_with_the_same_message
        )
        await released[0]
    assert isinstance(outcome, Duplicate)
    assert outcome.original == original
    assert writes == 1
    assert await stored_for(pool, sender) == 0


async def test_the_fifth_message_committed_after_the_read_refuses_a_sixth(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    sender = random_phone()
    async with pool.connection() as conn:
        await receive_batch(conn, [request(sender, f"fill {i}") for i in range(4)])

    async def a_fifth() -> None:
        assert isinstance(await one(pool, request(sender, "fifth")), NewMessage)

    [outcome], _ = await interrupted(database_url, [request(sender, "sixth")], a_fifth)
    assert isinstance(outcome, OverRateLimit)
    assert await stored_for(pool, sender) == 5


async def test_another_senders_message_after_the_read_changes_nothing(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    sender = random_phone()

    async def another_sender() -> None:
        assert isinstance(await one(pool, request(random_phone(), "other")), NewMessage)

    [outcome], writes = await interrupted(database_url, [request(sender)], another_sender)
    assert isinstance(outcome, NewMessage)
    # Written at the first try, its own sender's window unchanged.
    assert writes == 1


async def test_a_read_older_than_fresh_is_read_again(
    pool: AsyncConnectionPool, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receive_sms, "FRESH", timedelta(milliseconds=50))
    stalled_until: list[Any] = []

    async def a_stall() -> None:
        await asyncio.sleep(0.2)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT clock_timestamp()")
            stalled_until.append((await cur.fetchone() or [None])[0])

    [outcome], writes = await interrupted(database_url, [request(random_phone())], a_stall)
    assert isinstance(outcome, NewMessage)
    # Stamped by the second read, after the stall, not by the first.
    assert outcome.event.received_at > stalled_until[0]
    assert writes == 2
