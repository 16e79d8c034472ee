"""Two builds' read paths side by side: their runs alternate, pair by pair.

    uv run --group bench python -m bench.query_pair [--a-dir DIR] [--b-dir DIR]
        [--a-env K=V,...] [--b-env K=V,...] [--pairs N] [--seconds S] [--rows N]

`bench.pair` for the queries. Both `smsq serve`s read one database: the read
model seeded as `bench.query` seeds it, and 1,000 messages sent through A for
`GET /messages/{id}`. The two builds must share the schema (A migrates it).
For each query in turn, A then B, B then A, and so on: a maximum run with
wrk, its rate and the CPU a request cost the server and PostgreSQL. The two
runs of a pair are seconds apart, so their ratio is the figure; the median of
the pairs' ratios is reported.
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from bench.datagen import copy_messages, message_rows, phones
from bench.harness import Server, arguments, load_note, postmaster, run, table, tree_cpu_seconds
from bench.ingest import served
from bench.pair import SIDES, builds, parse_sides, side_arguments
from bench.query import CONNECTIONS, ONE, SENT, Scenario, scenarios, send_messages
from bench.wrk import wrk

SECONDS = 4  # a turn's run, without --seconds
COMPARED = ("from=busiest, first page", "status=processed, first page", ONE)


class Turn(NamedTuple):
    rps: float
    app_us: float
    db_us: float


def turn(base: str, pids: tuple[int, int | None], paths: Path, seconds: float) -> Turn:
    wrk(base, "get_paths.lua", [str(paths)], seconds=1, connections=CONNECTIONS)
    server, database = pids

    def used() -> tuple[float, float]:
        return tree_cpu_seconds(server), tree_cpu_seconds(database) if database else 0.0

    app, db = used()
    measured = wrk(base, "get_paths.lua", [str(paths)], seconds=seconds, connections=CONNECTIONS)
    if measured.unexpected(200):
        raise RuntimeError(f"{base}: {measured.unexpected(200)} answers were not 200")
    app_after, db_after = used()
    requests = max(1, measured.requests)
    return Turn(measured.rps, (app_after - app) / requests * 1e6, (db_after - db) / requests * 1e6)


def bench(server: Server, args: Any, logs: Path) -> int:
    pairs, seconds = args.pairs, args.seconds
    compared = builds(args)
    url = server.create("query_pair")
    senders = phones(10_000, seed=3)
    copy_messages(url, message_rows(args.rows, senders, seed=3))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
    database = postmaster(url)
    with ExitStack() as stack:
        sides = []
        for i, build in enumerate(compared):
            where = logs / SIDES[i]
            where.mkdir()
            sides.append(
                stack.enter_context(served("smsq", url, 1, where, build.env, smsq=build.smsq))
            )
        sent = send_messages(sides[0][0], url, SENT)
        chosen: list[Scenario] = [s for s in scenarios(senders, sent) if s.name in COMPARED]
        files = []
        for number, scenario in enumerate(chosen):
            file = logs / f"paths-{number}.txt"
            file.write_text("\n".join(scenario.paths) + "\n")
            files.append(file)
        turns: dict[tuple[str, int], list[Turn]] = {}
        for number in range(pairs):
            for scenario, file in zip(chosen, files, strict=True):
                for i in (0, 1) if number % 2 == 0 else (1, 0):
                    base, pid = sides[i]
                    measured = turn(base, (pid, database), file, seconds)
                    turns.setdefault((scenario.name, i), []).append(measured)
            print(f"pair {number + 1} of {pairs} ({load_note()})", flush=True)
    rows = []
    for scenario in chosen:
        a, b = turns[(scenario.name, 0)], turns[(scenario.name, 1)]
        each = [y.rps / x.rps for x, y in zip(a, b, strict=True)]
        rows.append(
            [
                scenario.name,
                *(
                    f"{statistics.median(t.rps for t in side):,.0f} req/s,"
                    f" {statistics.median(t.app_us for t in side):,.0f}"
                    f" + {statistics.median(t.db_us for t in side):,.0f} µs"
                    for side in (a, b)
                ),
                " / ".join(f"{r:.2f}" for r in each),
                f"{statistics.median(each):.2f}x",
            ]
        )
    print()
    print(f"A: {compared[0].name}\nB: {compared[1].name}")
    print(f"{args.rows:,} messages, wrk {CONNECTIONS} connections, {seconds:g} s runs; medians:")
    print(
        table(
            ["query", "A (app + PostgreSQL CPU)", "B", "B / A, pair by pair", "median"],
            rows,
        )
    )
    print(f"after the run: {load_note()}")
    return 0


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    side_arguments(parser, SECONDS)
    parser.add_argument("--rows", type=int, default=100_000, help="messages in the read model")
    args = parse_sides(parser, SECONDS)
    run("Query pair: two builds' GET /messages, alternating", args, bench)


if __name__ == "__main__":
    main()
