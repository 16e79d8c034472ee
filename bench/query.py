"""Query: GET /messages on a read model of 1,000,000 messages, first page and page 1000.

    uv run --group bench python -m bench.query [--quick] [--rows N]

The read model is seeded directly with COPY (deterministic: Zipf-distributed
senders, so a few send a lot and most a little; 3 % not yet processed); the
queries do not need its events. For each query: the maximum rate with wrk
(closed loop), then latency in an open-loop run at half that rate, and beside
it the same SQL statement through psycopg, alone and 16 at a time.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

from bench import openloop, profile
from bench.datagen import copy_messages, message_rows, phones
from bench.harness import (
    Server,
    arguments,
    load_note,
    process,
    run,
    table,
    verdict,
    wait_http,
)
from bench.harness import port as free_port
from bench.wrk import Run, wrk
from projections.messages import list_statement
from tests.support.servers import SMSQ

CONNECTIONS = 16
DEEP = 9990  # page 1000 at the default limit of 10
PROFILED = "status=processed, first page"
PROFILE_KEEP = ("api/", "projections/", "litestar", "psycopg", "msgspec")


def scenarios(senders: list[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(name, filter sets); a name's requests cycle through its filter sets."""
    busiest = senders[0]  # rank 1 of the Zipf distribution
    return [
        ("from=busiest, first page", [{"from": busiest}]),
        ("from=busiest, page 1000", [{"from": busiest, "offset": DEEP}]),
        ("from=1,000 senders, first page", [{"from": s} for s in senders[:1000]]),
        ("status=processed, first page", [{"status": "processed"}]),
        ("status=processed, page 1000", [{"status": "processed", "offset": DEEP}]),
        ("status=stored, first page", [{"status": "stored"}]),
        ("status=stored, page 1000", [{"status": "stored", "offset": DEEP}]),
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


async def sql_rates(
    url: str, sets: list[dict[str, Any]], seconds: float
) -> tuple[float, float, float]:
    """(p50 ms, p99 ms) of the statement alone, and its rate 16 at a time."""
    statements = [statement(f) for f in sets]
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

    async def worker() -> None:
        nonlocal done
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            j = 0
            while time.perf_counter() < stop:
                query, params = statements[j % len(statements)]
                cur = await conn.execute(query, params)
                await cur.fetchall()
                done += 1
                j += 1

    stop = time.perf_counter() + seconds / 2
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    rate = done / (time.perf_counter() - started)
    return (
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
        rate,
    )


def http_rates(
    listen: int,
    sets: list[dict[str, Any]],
    seconds: float,
    logs: Path,
    spy: tuple[int, Path] | None = None,
) -> tuple[Run, openloop.Result]:
    """GET /messages through the filter sets on the server at `listen`: the maximum with
    wrk (after a second's warm-up), then open loop at half that rate for the latency.

    With `spy` (the server's pid, a file), py-spy samples the maximum run.
    """
    paths = [path(f) for f in sets]
    file = logs / "paths.txt"
    file.write_text("\n".join(paths) + "\n")
    base = f"http://127.0.0.1:{listen}"
    wrk(base, "get_paths.lua", [str(file)], seconds=1, connections=CONNECTIONS)
    sampler = profile.record(spy[0], seconds, spy[1]) if spy else None
    run = wrk(base, "get_paths.lua", [str(file)], seconds=seconds, connections=CONNECTIONS)
    if sampler is not None:
        sampler.wait()
    requests = [openloop.get(p) for p in paths]
    half = asyncio.run(
        openloop.run(
            "127.0.0.1",
            listen,
            rate=run.rps / 2,
            seconds=seconds,
            build=lambda i: requests[i % len(requests)],
        )
    )
    return run, half


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
    results = []
    log = logs / "serve.log"
    with process([SMSQ, "serve"], env=env, log=log) as proc:
        wait_http(base + "/readyz", proc, log)
        for name, sets in scenarios(senders):
            print(f"{name} ({load_note()})", flush=True)
            spy = (proc.pid, raw) if args.profile and name == PROFILED else None
            run, half = http_rates(listen, sets, seconds, logs, spy)
            sql = asyncio.run(sql_rates(url, sets, seconds))
            results.append((name, run, half, sql))

    rows_out = []
    for name, run, half, (sql_p50, sql_p99, sql_rate) in results:
        rows_out.append(
            [
                name,
                run.rps,
                half.percentile(50) * 1000,
                half.percentile(99) * 1000,
                run.unexpected(200) + half.sent - half.statuses.get(200, 0),
                sql_rate,
                sql_p50,
                sql_p99,
                f"{run.rps / sql_rate:.2f}x",
            ]
        )
    print()
    print(
        f"GET /messages on {rows:,} messages: HTTP max with wrk ({CONNECTIONS} connections), "
        f"latency open loop at half that rate; SQL through psycopg:"
    )
    print(
        table(
            [
                "query",
                "HTTP req/s",
                "p50 ms",
                "p99 ms",
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
    by_name = {name: (run, half) for name, run, half, _ in results}
    goals = []
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
