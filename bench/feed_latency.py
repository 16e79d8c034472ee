"""Latency at half load: the live feed's delivery, and the seal lag.

    uv run --group bench python -m bench.feed_latency [--quick] [--rate R] [--clients N]

Starts `smsq serve` (projectors, processing stage and sealer in-process, as by
default) on a database of its own (see bench/harness.py). Unless `--rate`
gives smsq's ingest maximum, it is measured first as `bench.ingest` does
(wrk, closed loop, a new sender on every request). Then N clients follow
`GET /events/stream?type=SmsReceived` from the end of the log while an
open-loop writer posts messages at half that maximum. For each SmsReceived,
the delivery latency is the moment its SSE message reached a client less
the moment the POST's 201 reached the writer (both on this machine's
monotonic clock; the clients run in a process of their own, so their parsing
does not delay the writer). Each client must receive every SmsReceived
committed during the run exactly once, in the log's reading order.

The seal lag of every event written during the run is read from the tables
once the sealer has caught up: the `sealed_at` of the seal that covers the
event less the event's `recorded_at` (what `smsq_seal_lag_seconds` samples
for the oldest unsealed event at one moment).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import psycopg

from bench import openloop
from bench.datagen import phones
from bench.harness import (
    Server,
    arguments,
    load_note,
    percentile,
    postmaster,
    run,
    table,
    verdict,
    written,
)
from bench.ingest import caught_up, maximum, senders_file, served

STREAM = "/events/stream?type=SmsReceived&after={after}"
SEAL_LAG_GOAL = 1.5
_STREAM_ID = '"stream_id":"sms-'
_UUID = 36

# Where a follower starts: the last event committed, when nothing is in flight.
# (The text is named `tx`: ORDER BY a name of the select list would sort by the text.)
_END = "SELECT tx_id::text AS tx, position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1"

# What every follower must receive, in this order: the log's reading order.
_EXPECTED = """
SELECT position FROM events
WHERE type = 'SmsReceived' AND (tx_id, position) > (%(tx)s::text::xid8, %(position)s)
ORDER BY tx_id, position
"""

# Each event written since the start, with the seal that covers it.
_SEAL_LAG = """
SELECT extract(epoch FROM s.sealed_at - e.recorded_at)::float8
FROM events AS e
JOIN seals AS s
  ON (e.tx_id, e.position) > (s.after_tx_id, s.after_position)
 AND (e.tx_id, e.position) <= (s.to_tx_id, s.to_position)
WHERE (e.tx_id, e.position) > (%(tx)s::text::xid8, %(position)s)
"""


class Delivered(NamedTuple):
    position: int
    message_id: str
    at: float
    """time.monotonic() when the message's last line arrived."""


class Stream(NamedTuple):
    delivered: list[Delivered]
    lagged: bool
    """The server dropped the client as too far behind (`event: lagged`)."""


class Followed(NamedTuple):
    clients: list[Stream]
    cpu: float
    elapsed: float


async def _follow(
    client: httpx.AsyncClient, after: int, ready: asyncio.Event, last: asyncio.Future[int]
) -> Stream:
    got: list[Delivered] = []
    position, data = 0, ""
    async with client.stream("GET", STREAM.format(after=after)) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith(":"):
                ready.set()
            elif line == "event: lagged":
                return Stream(got, lagged=True)
            elif line.startswith("id: "):
                position = int(line[4:])
            elif line.startswith("data: "):
                data = line
            elif not line and data:
                at = time.monotonic()
                start = data.index(_STREAM_ID) + len(_STREAM_ID)
                got.append(Delivered(position, data[start : start + _UUID], at))
                data = ""
            # Checked on every line: a client that had the last event before it
            # learnt its number stops at the next heartbeat.
            if last.done() and got and got[-1].position == last.result():
                break
    return Stream(got, lagged=False)


async def _followers(base: str, after: int, clients: int, pipe: Connection) -> Followed:
    loop = asyncio.get_running_loop()
    last: asyncio.Future[int] = loop.create_future()
    readies = [asyncio.Event() for _ in range(clients)]
    limits = httpx.Limits(max_connections=clients)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base, timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(_follow(client, after, r, last)) for r in readies]
        await asyncio.gather(*(r.wait() for r in readies))
        pipe.send("ready")
        # The writer's run, then the position of the last event every client must see.
        last.set_result(await loop.run_in_executor(None, pipe.recv))
        got = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    after_usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after_usage.ru_utime + after_usage.ru_stime) - (usage.ru_utime + usage.ru_stime)
    return Followed(list(got), cpu, time.monotonic() - started)


def followers(base: str, after: int, clients: int, pipe: Connection) -> None:
    """The feed clients, in a process of their own; the result goes back through `pipe`."""
    pipe.send(asyncio.run(_followers(base, after, clients, pipe)))


class HalfLoad(NamedTuple):
    writer: openloop.Result
    acknowledged: dict[str, float]
    followed: Followed
    expected: list[int]
    seal_lags: list[float]
    wal_bytes: int
    transactions: int
    """Written by the server from the writer's start until all was folded and sealed."""


async def write(
    base: str, rate: float, seconds: float, senders: list[str]
) -> tuple[openloop.Result, dict[str, float]]:
    host, listen = base.removeprefix("http://").split(":")
    acknowledged: dict[str, float] = {}

    def build(i: int) -> bytes:
        body = msgspec.json.encode(
            {"from": senders[i % len(senders)], "to": "+447911123456", "message": f"feed {i}"}
        )
        return openloop.post("/messages", body)

    def on_response(i: int, status: int, body: bytes, at: float) -> None:
        if status == 201:
            acknowledged[msgspec.json.decode(body)["id"]] = at

    result = await openloop.run(
        host, int(listen), rate=rate, seconds=seconds, build=build, on_response=on_response
    )
    return result, acknowledged


def half_load(base: str, url: str, rate: float, seconds: float, clients: int) -> HalfLoad:
    caught_up(url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(_END).fetchone()
    tx, after = row if row is not None else ("0", 0)
    place = {"tx": tx, "position": after}
    # The clients' clock must be the writer's: time.monotonic() is one clock for
    # every process of the machine (CLOCK_MONOTONIC), and asyncio's loop.time() is it.
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=followers, args=(base, after, clients, theirs), daemon=True)
    child.start()
    try:
        if not ours.poll(60) or ours.recv() != "ready":
            raise RuntimeError("the feed clients did not connect within 60 s")
        print(f"open loop at {rate:,.0f}/s, {clients} feed clients ({load_note()})", flush=True)
        wal, xids = written(url)
        writer, acknowledged = asyncio.run(write(base, rate, seconds, senders(seconds, rate)))
        # Every 201 is committed; the sealer and the projectors fold the rest.
        caught_up(url)
        wal_after, xids_after = written(url)
        with psycopg.connect(url, autocommit=True) as conn:
            expected = [r[0] for r in conn.execute(_EXPECTED, place)]
            seal_lags = [r[0] for r in conn.execute(_SEAL_LAG, place)]
        ours.send(expected[-1] if expected else after)
        if not ours.poll(90):
            raise RuntimeError("the feed clients did not finish within 90 s")
        followed: Followed = ours.recv()
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
    return HalfLoad(
        writer,
        acknowledged,
        followed,
        expected,
        seal_lags,
        wal_after - wal,
        xids_after - xids,
    )


def senders(seconds: float, rate: float) -> list[str]:
    # A sender per message: none comes near the rate limit.
    return phones(int(seconds * rate) + 1, seed=3)


def report(run: HalfLoad, clients: int) -> int:
    ms = 1000.0
    latencies: list[float] = []
    rows = []
    exact = True
    for n, (got, lagged) in enumerate(run.followed.clients, start=1):
        positions = [d.position for d in got]
        in_order = positions == run.expected
        exact &= in_order
        mine = [
            d.at - run.acknowledged[d.message_id] for d in got if d.message_id in run.acknowledged
        ]
        latencies += mine
        missing = len(set(run.expected) - set(positions))
        repeated = len(positions) - len(set(positions))
        rows.append(
            [
                n,
                len(got),
                missing,
                repeated,
                "yes" if in_order else "NO",
                "yes" if lagged else "no",
                percentile(mine, 50) * ms if mine else float("nan"),
                percentile(mine, 99) * ms if mine else float("nan"),
            ]
        )
    w = run.writer
    print()
    print(
        f"Writer: {w.sent:,} POST /messages at {w.rate:,.0f}/s (open loop), {w.achieved:,.0f}/s"
        f" answered, {len(run.acknowledged):,} 201s, p50 {w.percentile(50) * ms:.1f} ms,"
        f" p99 {w.percentile(99) * ms:.1f} ms; SmsReceived committed in the run:"
        f" {len(run.expected):,}"
    )
    messages = max(1, len(run.acknowledged))
    print(
        f"PostgreSQL, from the writer's start until all was folded and sealed:"
        f" {run.wal_bytes / messages:,.0f} bytes of WAL and"
        f" {run.transactions / messages:.3f} writing transactions per message"
        f" ({run.transactions:,} in all: group commits, projectors, sealer)"
    )
    print(
        f"Feed clients: {clients} in one process, which used"
        f" {100 * run.followed.cpu / run.followed.elapsed:.0f} % of one core"
    )
    print(
        table(
            [
                "client",
                "received",
                "missing",
                "repeated",
                "reading order",
                "dropped as lagged",
                "p50 ms",
                "p99 ms",
            ],
            rows,
        )
    )
    print()
    rows = []
    if latencies:
        rows.append(
            [
                "201 → SSE message at a feed client",
                len(latencies),
                percentile(latencies, 50) * ms,
                percentile(latencies, 99) * ms,
                max(latencies) * ms,
                min(latencies) * ms,
            ]
        )
    if run.seal_lags:
        rows.append(
            [
                "recorded → sealed (sealed_at - recorded_at)",
                len(run.seal_lags),
                percentile(run.seal_lags, 50) * ms,
                percentile(run.seal_lags, 99) * ms,
                max(run.seal_lags) * ms,
                min(run.seal_lags) * ms,
            ]
        )
    print(table(["latency at half load", "events", "p50 ms", "p99 ms", "max ms", "min ms"], rows))
    print()
    seal_p99 = percentile(run.seal_lags, 99) if run.seal_lags else float("inf")
    goals = [
        ["every client: every SmsReceived once, in reading order", verdict(exact)],
        [
            f"seal lag p99 ≤ {SEAL_LAG_GOAL:g} s",
            verdict(seal_p99 <= SEAL_LAG_GOAL and len(run.seal_lags) > 0),
        ],
    ]
    print(table(["goal", "verdict"], goals))
    print(f"after the run: {load_note()}")
    return 0 if exact else 1


def bench(server: Server, args: Any, logs: Path) -> int:
    url = server.create("feed")
    seconds, warm, half_seconds = (4, 2, 6) if args.quick else (15, 3, 20)
    # Heartbeats every second: a client that has every event stops at the next one.
    with served("smsq", url, args.workers, logs, {"SMSQ_FEED_HEARTBEAT": "1"}) as (base, pid):
        rate = args.rate
        if rate is None:
            print(f"smsq: maximum ({load_note()})", flush=True)
            file = senders_file(logs)
            measured, _ = maximum(base, (file, 0), seconds, warm, (pid, postmaster(url)), url)
            rate = measured.run.rps
            print(
                f"smsq maximum: {rate:,.0f} req/s ({measured.run.describe_unexpected(201)} not 201)"
            )
        run = half_load(base, url, rate / 2, half_seconds, args.clients)
    return report(run, args.clients)


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument(
        "--rate", type=float, help="smsq's ingest maximum, req/s (default: measured first)"
    )
    parser.add_argument("--clients", type=int, default=4, help="feed clients (default 4)")
    parser.add_argument("--workers", type=int, default=1, help="granian workers")
    args = parser.parse_args()
    run("Latency at half load: live feed and seals", args, bench)


if __name__ == "__main__":
    main()
