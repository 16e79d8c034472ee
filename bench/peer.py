"""Peer: our append path against the `eventsourcing` library's PostgreSQL recorder.

    uv run --group bench python -m bench.peer [--quick]

Each writes one event to each of many new aggregates (streams), one event per
call, from W writers at once (W = 1, then the concurrency of a busy API
process), on the same PostgreSQL, each in a database of its own:
- theirs: `PostgresApplicationRecorder.insert_events` (eventsourcing 9.x,
  the recorder an eventsourcing Application uses), one thread per writer and
  a pool connection each;
- ours, `commands.event_store.append`: one asyncio task per writer, a pool
  connection each, the INSERT as its own transaction;
- ours, the full `ReceiveSms` command (lock, window read, decision, append,
  window write) through the group committer, as POST /messages runs it.
Payloads are the same `SmsReceived` JSON for both.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import msgspec
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from bench.datagen import T0, phones
from bench.harness import (
    Server,
    arguments,
    header,
    load_note,
    postgres,
    ratio,
    stop_on_sigterm,
    table,
    verdict,
)
from commands.event_store import Append, append
from commands.group_commit import GroupCommitter
from commands.receive_sms import ReceiveRequest, receive_batch
from domain.commands import ReceiveSms
from domain.events import EventMetadata, SmsReceived, stream_of

METADATA = EventMetadata(correlation_id=UUID(int=1), causation_id=UUID(int=1), actor="bench")


def event(i: int) -> SmsReceived:
    return SmsReceived(
        message_id=uuid4(),
        from_="+12025550100",
        to="+447911123456",
        message=f"peer {i}",
        received_at=T0,
    )


def timed_threads(writers: int, count: int, one: Callable[[int], None]) -> float:
    """Run `one(i)` for i < count on `writers` threads; returns events per second."""
    lock = threading.Lock()
    taken = iter(range(count))

    def work() -> None:
        while True:
            with lock:
                i = next(taken, None)
            if i is None:
                return
            one(i)

    threads = [threading.Thread(target=work) for _ in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count / (time.perf_counter() - started)


def theirs(url: str, writers: int, count: int) -> float:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    info = conninfo_to_dict(url)
    datastore = PostgresDatastore(
        dbname=str(info["dbname"]),
        host=str(info.get("host", "")),
        port=str(info.get("port", "5432")),
        user=str(info.get("user", "postgres")),
        password=str(info.get("password", "")),
        pool_size=writers,
    )
    try:
        recorder = PostgresApplicationRecorder(datastore)
        recorder.create_table()
        topic = "domain.events:SmsReceived"

        def one(i: int) -> None:
            e = event(i)
            recorder.insert_events([StoredEvent(e.message_id, 1, topic, msgspec.json.encode(e))])

        one(-1)  # connect and warm up before the clock starts
        return timed_threads(writers, count, one)
    finally:
        datastore.close()


async def timed_tasks(writers: int, count: int, one: Callable[[int], Any]) -> float:
    taken = iter(range(count))

    async def work() -> None:
        while (i := next(taken, None)) is not None:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(work() for _ in range(writers)))
    return count / (time.perf_counter() - started)


async def ours_append(url: str, writers: int, count: int) -> float:
    async with AsyncConnectionPool(
        url, min_size=writers, max_size=writers, kwargs={"autocommit": True}
    ) as pool:

        async def one(i: int) -> None:
            e = event(i)
            async with pool.connection() as conn:
                await append(conn, [Append(stream_of(e.message_id), 0, [e], METADATA)])

        await one(-1)
        return await timed_tasks(writers, count, one)


async def ours_command(url: str, writers: int, count: int) -> float:
    senders = phones(count + 1, seed=writers)
    async with AsyncConnectionPool(
        url, min_size=2, max_size=10, kwargs={"autocommit": True}
    ) as pool:
        committer = GroupCommitter(pool, receive_batch)

        async def one(i: int) -> None:
            command = ReceiveSms.create(uuid4(), senders[i], "+447911123456", f"peer {i}")
            await committer.submit(ReceiveRequest(command, METADATA))

        await one(-1)
        return await timed_tasks(writers, count, one)


def bench(server: Server, quick: bool) -> int:
    count = 2_000 if quick else 20_000
    rows = []
    results: dict[tuple[str, int], float] = {}
    for writers in (1, 32):
        n = count // 4 if writers == 1 else count
        print(f"{writers} writer(s), {n:,} events each ({load_note()})", flush=True)
        results["theirs", writers] = theirs(server.create("peer_es", migrated=False), writers, n)
        results["append", writers] = asyncio.run(ours_append(server.create("peer"), writers, n))
        results["command", writers] = asyncio.run(ours_command(server.create("peer"), writers, n))
    for writers in (1, 32):
        base = results["theirs", writers]
        for key, label in (
            ("theirs", "eventsourcing PostgresApplicationRecorder.insert_events"),
            ("append", "smsq commands.event_store.append"),
            ("command", "smsq ReceiveSms command (group commit)"),
        ):
            rate = results[key, writers]
            rows.append([writers, label, rate, ratio(rate, base)])
    print()
    print("One event to each of many new aggregates, events/s:")
    print(table(["writers", "path", "events/s", "vs eventsourcing"], rows))
    print()
    best = max(results["append", 32], results["command", 32])
    goals = [
        [
            "ours >= 2x eventsourcing (32 writers)",
            ratio(results["append", 32], results["theirs", 32]),
            verdict(results["append", 32] >= 2 * results["theirs", 32]),
        ],
        [
            "full command >= 2x eventsourcing (32 writers)",
            ratio(results["command", 32], results["theirs", 32]),
            verdict(results["command", 32] >= 2 * results["theirs", 32]),
        ],
        [
            "ours >= 2x eventsourcing (1 writer)",
            ratio(results["append", 1], results["theirs", 1]),
            verdict(results["append", 1] >= 2 * results["theirs", 1]),
        ],
    ]
    del best
    print(table(["goal", "measured", "verdict"], goals))
    print(f"after the run: {load_note()}")
    return 0


def main() -> None:
    args = arguments(__doc__.split("\n")[0]).parse_args()
    stop_on_sigterm()
    with postgres(args.database_url) as server:
        header("Peer: appending events", server)
        raise SystemExit(bench(server, args.quick))


if __name__ == "__main__":
    main()
