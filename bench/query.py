"""Query: GET /messages (first page, page 1000) and GET /messages/{id} on 1,000,000 messages.

    uv run --group bench python -m bench.query [--quick] [--rows N]

The read model is seeded directly with COPY (deterministic: Zipf-distributed
senders, so a few send a lot and most a little; 3 % not yet processed); the
list queries do not need its events. `GET /messages/{id}` reads the message's
stream as well as its row, so its 1,000 messages are sent through the API
first. For each query: the maximum rate with wrk (closed loop), then latency
in an open-loop run at half that rate, and beside it the same SQL statement
through psycopg, alone and 16 at a time.

Then what one worker can reach. A granian worker runs the app on one thread,
its event loop (granian's own thread handles the sockets and HTTP), so
its rate is at most one second over that thread's CPU a request, which is
measured for each query's maximum run and for `GET /healthz` (the same
server, middlewares and access check, no database). A query's request does
what `/healthz` does and what the yardstick's client does for the same
statement, whose CPU a query is measured too: their sum estimates that
request's floor (measured in two processes, at their own rates, so an
estimate, not a bound). Half the statement's own rate leaves the thread
2 / (SQL rate) of a second a request: the budget. What the budget leaves over
the floor is about all that the route's own work may cost (its parameters,
the pool, the rows, the page's encoding) for the read-path goal to be met.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode
from uuid import UUID

import httpx
import psutil
import psycopg

from bench import openloop, profile
from bench.datagen import copy_messages, message_rows, phones
from bench.harness import (
    Server,
    arguments,
    event_loop,
    load_note,
    loop_use,
    process,
    run,
    table,
    verdict,
    wait_http,
)
from bench.harness import port as free_port
from bench.ingest import caught_up
from bench.wrk import Run, wrk
from domain.events import stream_of
from projections.messages import GET_MESSAGE, list_statement
from tests.support.servers import SMSQ

CONNECTIONS = 16
DEEP = 9990  # page 1000 at the default limit of 10
PROFILED = "status=processed, first page"
ONE = "one message, GET /messages/{id}"
SENT = 1000
PROFILE_KEEP = ("api/", "projections/", "litestar", "psycopg", "msgspec")


class Sql(NamedTuple):
    p50_ms: float
    p99_ms: float
    rate: float
    client_us: float
    """The yardstick's own CPU a query, 16 at a time (one thread, as a worker's loop)."""


class Scenario(NamedTuple):
    name: str
    paths: list[str]
    """Requests cycle through these..."""
    statements: list[tuple[Any, Any]]
    """...and the SQL alone through the statements the handler runs for them."""


def listing(name: str, filter_sets: list[dict[str, Any]]) -> Scenario:
    return Scenario(name, [path(f) for f in filter_sets], [statement(f) for f in filter_sets])


def scenarios(senders: list[str], sent: list[UUID]) -> list[Scenario]:
    busiest = senders[0]  # rank 1 of the Zipf distribution
    return [
        listing("from=busiest, first page", [{"from": busiest}]),
        listing("from=busiest, page 1000", [{"from": busiest, "offset": DEEP}]),
        listing("from=1,000 senders, first page", [{"from": s} for s in senders[:1000]]),
        listing("status=processed, first page", [{"status": "processed"}]),
        listing("status=processed, page 1000", [{"status": "processed", "offset": DEEP}]),
        listing("status=stored, first page", [{"status": "stored"}]),
        listing("status=stored, page 1000", [{"status": "stored", "offset": DEEP}]),
        Scenario(
            ONE,
            [f"/messages/{i}" for i in sent],
            [(GET_MESSAGE, {"stream": stream_of(i), "id": i}) for i in sent],
        ),
    ]


def path(filters: dict[str, Any]) -> str:
    return "/messages?" + urlencode(filters)


def statement(filters: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    return list_statement(
        from_=filters.get("from"),
        status=filters.get("status"),
        limit=11,  # the API asks for one more than the page, to know if there is a next
        offset=filters.get("offset", 0),
    )


def send_messages(base: str, url: str, count: int) -> list[UUID]:
    """`count` messages through the API, each from a sender of its own, once
    every projector has folded them (each row current with its stream)."""
    senders = phones(count, seed=4)
    ids = []
    with httpx.Client(base_url=base) as client:
        for sender in senders:
            body = {"from": sender, "to": senders[0], "message": "a message to read back"}
            answer = client.post("/messages", json=body)
            answer.raise_for_status()
            ids.append(UUID(answer.json()["id"]))
    caught_up(url)
    return ids


async def sql_rates(url: str, statements: list[tuple[Any, Any]], seconds: float) -> Sql:
    """The statement alone (p50, p99), then 16 at a time (rate, CPU a query)."""
    latencies = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        until = time.perf_counter() + seconds / 2
        i = 0
        while time.perf_counter() < until:
            query, params = statements[i % len(statements)]
            started = time.perf_counter()
            cur = await conn.execute(query, params)
            await cur.fetchall()
            latencies.append(time.perf_counter() - started)
            i += 1
    latencies.sort()
    done = 0

    async def worker(conn: psycopg.AsyncConnection[Any]) -> None:
        nonlocal done
        j = 0
        while time.perf_counter() < stop:
            query, params = statements[j % len(statements)]
            cur = await conn.execute(query, params)
            await cur.fetchall()
            done += 1
            j += 1

    async with AsyncExitStack() as stack:
        # Connected before the clock starts: the rate and the CPU are the queries'.
        conns = [
            await stack.enter_async_context(
                await psycopg.AsyncConnection.connect(url, autocommit=True)
            )
            for _ in range(CONNECTIONS)
        ]
        stop = time.perf_counter() + seconds / 2
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(conn) for conn in conns))
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
    return Sql(
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        done / elapsed,
        used / max(1, done) * 1e6,
    )


class Rates(NamedTuple):
    run: Run
    """The maximum (wrk)."""
    half: openloop.Result
    """Open loop at half the maximum."""
    loop_us: float | None
    """CPU a request of the worker's event-loop thread in the maximum run, when asked."""
    half_busy: float | None
    """The share of the open-loop run's time that thread spent on the CPU. From about
    0.9 up (granian's thread takes the interpreter's lock too) the half rate
    saturated it (a maximum read at a fast moment of the machine's, say), and
    requests queued for the rest of the run."""


def http_rates(
    listen: int,
    paths: list[str],
    seconds: float,
    logs: Path,
    spy: tuple[int, Path] | None = None,
    loop: psutil.Process | None = None,
) -> Rates:
    """GET /messages through the filter sets on the server at `listen`: the maximum with
    wrk (after a second's warm-up), then open loop at half that rate for the latency.

    With `spy` (the server's pid, a file), py-spy samples the maximum run; with
    `loop` (the worker), its event-loop thread's CPU is read around both runs.
    """
    run, loop_us = maximum(listen, paths, seconds, logs, loop, spy)
    half, busy = watched_half_load(listen, paths, run.rps / 2, seconds, loop)
    return Rates(run, half, loop_us, busy)


def watched_half_load(
    listen: int, paths: list[str], rate: float, seconds: float, loop: psutil.Process | None
) -> tuple[openloop.Result, float | None]:
    """`half_load`, and the share of its time the worker's event-loop thread spent
    on the CPU (None when `loop` is not given or not readable; see `Rates.half_busy`)."""
    before, started = loop_cpu(loop), time.perf_counter()
    half = half_load(listen, paths, rate, seconds)
    after = loop_cpu(loop)
    if before is None or after is None:
        return half, None
    return half, (after - before) / (time.perf_counter() - started)


def maximum(
    listen: int,
    paths: list[str],
    seconds: float,
    logs: Path,
    loop: psutil.Process | None,
    spy: tuple[int, Path] | None = None,
) -> tuple[Run, float | None]:
    """wrk through `paths` after a second's warm-up, and the CPU a request of the
    worker's `loop` thread meanwhile; py-spy samples the run with `spy`."""
    file = logs / "paths.txt"
    file.write_text("\n".join(paths) + "\n")
    base = f"http://127.0.0.1:{listen}"
    wrk(base, "get_paths.lua", [str(file)], seconds=1, connections=CONNECTIONS)
    sampler = profile.record(spy[0], seconds, spy[1]) if spy else None
    before = loop_cpu(loop)
    run = wrk(base, "get_paths.lua", [str(file)], seconds=seconds, connections=CONNECTIONS)
    after = loop_cpu(loop)
    loop_us = None
    if before is not None and after is not None:
        loop_us = (after - before) / max(1, run.requests) * 1e6
    if sampler is not None:
        sampler.wait()
    return run, loop_us


def loop_cpu(loop: psutil.Process | None) -> float | None:
    """CPU seconds of the worker's event-loop thread so far (None: not read)."""
    use = None if loop is None else loop_use(loop)
    return None if use is None else use.cpu


def spent(loop_us: float | None) -> float:
    if loop_us is None:
        raise RuntimeError("the worker's event loop was not measured")
    return loop_us


def half_load(listen: int, paths: list[str], rate: float, seconds: float) -> openloop.Result:
    """GET /messages through `paths` in turn at `rate` a second, in an open loop."""
    requests = [openloop.get(p) for p in paths]
    return asyncio.run(
        openloop.run(
            "127.0.0.1",
            listen,
            rate=rate,
            seconds=seconds,
            build=lambda i: requests[i % len(requests)],
        )
    )


def bench(server: Server, args: Any, logs: Path) -> int:
    seconds = 3 if args.quick else 8
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    url = server.create("query")
    senders = phones(10_000, seed=3)
    started = time.perf_counter()
    copy_messages(url, message_rows(rows, senders, seed=3))
    seeded = time.perf_counter() - started
    print(f"seeded {rows:,} messages with COPY in {seeded:.1f} s ({rows / seeded:,.0f} rows/s)")
    with psycopg.connect(url) as conn:
        busiest = conn.execute(
            'SELECT count(*) FROM sms_messages WHERE "from" = %s', (senders[0],)
        ).fetchone()
    print(f"the busiest sender has {busiest[0] if busiest else 0:,} messages", flush=True)

    raw = (args.profile or logs) / "query-smsq.pyspy.txt"
    listen = free_port()
    base = f"http://127.0.0.1:{listen}"
    env = {"SMSQ_DATABASE_URL": url, "SMSQ_PORT": str(listen), "SMSQ_LOG_LEVEL": "WARNING"}
    results: list[tuple[str, Rates, Sql]] = []
    log = logs / "serve.log"
    with process([SMSQ, "serve"], env=env, log=log) as proc:
        wait_http(base + "/readyz", proc, log)
        loop = event_loop(proc.pid)
        if loop is None:
            raise RuntimeError("smsq serve runs one worker here (is SMSQ_WORKERS set?)")
        started = time.perf_counter()
        sent = send_messages(base, url, SENT)
        print(f"sent {SENT:,} messages through the API in {time.perf_counter() - started:.1f} s")
        print(f"GET /healthz ({load_note()})", flush=True)
        stack, stack_us = maximum(listen, ["/healthz"], seconds, logs, loop)
        for name, paths, statements in scenarios(senders, sent):
            print(f"{name} ({load_note()})", flush=True)
            spy = (proc.pid, raw) if args.profile and name == PROFILED else None
            rates = http_rates(listen, paths, seconds, logs, spy, loop)
            sql = asyncio.run(sql_rates(url, statements, seconds))
            results.append((name, rates, sql))

    rows_out = []
    for name, (top, half, _, busy), sql in results:
        rows_out.append(
            [
                name,
                top.rps,
                half.percentile(50) * 1000,
                half.percentile(99) * 1000,
                "" if busy is None else 100 * busy,
                top.unexpected(200) + half.sent - half.statuses.get(200, 0),
                sql.rate,
                sql.p50_ms,
                sql.p99_ms,
                f"{top.rps / sql.rate:.2f}x",
            ]
        )
    print()
    print(
        f"GET /messages on {rows:,} messages: HTTP max with wrk ({CONNECTIONS} connections), "
        f"latency open loop at half that rate (and the share of it the worker's event loop"
        f" spent on the CPU); SQL through psycopg:"
    )
    print(
        table(
            [
                "query",
                "HTTP req/s",
                "p50 ms",
                "p99 ms",
                "loop busy %",
                "not 200",
                "SQL q/s",
                "SQL p50 ms",
                "SQL p99 ms",
                "HTTP / SQL",
            ],
            rows_out,
        )
    )
    print()
    healthz_us = spent(stack_us)
    print(
        f"What one worker can reach: CPU a request of its event-loop thread; GET /healthz"
        f" (the same stack, no database) {stack.rps:,.0f} req/s at {healthz_us:.0f} µs a request:"
    )
    floors = [(name, spent(rates.loop_us), sql) for name, rates, sql in results]
    print(table(*reach(healthz_us, floors)))
    print()
    by_name = {name: (rates.run, rates.half) for name, rates, _ in results}
    goals = []
    for name, (top, half, _, _), sql in results:
        if "page 1000" in name:
            continue
        # This round's read-path goal: HTTP at half its own SQL's rate or better, p99 <= 5 ms.
        p99 = half.percentile(99) * 1000
        share = top.rps / sql.rate
        goals.append(
            [
                f">= 0.5x its SQL, p99 <= 5 ms: {name}",
                f"{share:.2f}x, {p99:.1f} ms",
                verdict(share >= 0.5 and p99 <= 5),
            ]
        )
    for first, deep in (
        ("from=busiest, first page", "from=busiest, page 1000"),
        ("status=processed, first page", "status=processed, page 1000"),
        ("status=stored, first page", "status=stored, page 1000"),
    ):
        p99 = by_name[first][1].percentile(99) * 1000
        goals.append([f"p99 <= 10 ms: {first}", f"{p99:.1f} ms", verdict(p99 <= 10)])
        slower = by_name[first][0].rps / by_name[deep][0].rps
        goals.append([f"{deep} <= 3x first page", f"{slower:.2f}x", verdict(slower <= 3)])
    return profile.conclude(
        goals,
        raw if args.profile else None,
        f"the maximum run of {PROFILED!r}",
        keep=PROFILE_KEEP,
    )


def reach(
    stack_us: float, measured: list[tuple[str, float, Sql]]
) -> tuple[list[str], list[list[Any]]]:
    """For each query: the loop thread's CPU a request; its floor (`/healthz`'s
    `stack_us` and the SQL client's CPU a query) and what the request spends over
    it; the budget at half the SQL's rate, and what that leaves over the floor
    (below zero: out of one worker's reach, whatever the handler costs)."""
    rows = []
    for name, loop_us, sql in measured:
        floor = stack_us + sql.client_us
        budget = 2e6 / sql.rate if sql.rate else 0.0
        rows.append([name, loop_us, floor, loop_us - floor, budget, budget - floor])
    headers = [
        "query",
        "loop µs/req",
        "floor µs/req",
        "over the floor",
        "budget at 0.5x",
        "budget over the floor",
    ]
    return headers, rows


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, help="messages in the read model")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help=f"sample smsq serve with py-spy during {PROFILED!r}; raw stacks go to DIR",
    )
    args = parser.parse_args()
    run("Query: GET /messages", args, bench)


if __name__ == "__main__":
    main()
