"""Several API hosts on one database: ingest maximum of N `smsq serve` against one.

    uv run --group bench python -m bench.hosts [--quick] [--hosts N] [--rounds R]

Each host is `smsq serve` on a loopback address of its own (127.0.0.2,
127.0.0.3, …) with a data directory of its own, all on one database, as the
two-host test runs them: the projectors run in every host (their leases let
one instance work at a time), the sealer in the first only
(`SMSQ_RUN_SEALER=false` on the others, so that one key signs). One wrk per
host, started together, each with its share of the connections and its own
part of the sender list; the total is the sum. Rounds alternate one host and
N hosts, each time on fresh servers. On a machine with fewer cores than
hosts plus PostgreSQL need, the hosts take CPU from each other and from
PostgreSQL: the figure then says what the database and the cores allow, not
what N machines would.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.harness import (
    Server,
    arguments,
    load_note,
    postmaster,
    run,
    table,
    tree_cpu_seconds,
)
from bench.ingest import CONNECTIONS, SENDERS, SKIP, senders_file, served
from bench.wrk import Run, wrk


def measure(
    url: str, hosts: int, seconds: float, warm: float, logs: Path, senders: tuple[Path, int]
) -> tuple[list[Run], float, float | None, int]:
    """Warm up, then measure N hosts at once; (runs, app CPU, PostgreSQL CPU, next offset)."""
    file, offset = senders
    share = CONNECTIONS // hosts
    database = postmaster(url)
    with ExitStack() as stack:
        bases, pids = [], []
        for k in range(hosts):
            settings = {"SMSQ_DATA_DIR": str(logs / f"host{k}")}
            if k:
                settings["SMSQ_RUN_SEALER"] = "false"
            base, pid = stack.enter_context(
                served("smsq", url, 1, logs, settings, host=f"127.0.0.{k + 2}")
            )
            bases.append(base)
            pids.append(pid)

        def drive(length: float, start: int) -> list[Run]:
            # Each host's wrk starts its senders a part of the list apart from the others'.
            part = SENDERS // hosts
            with ThreadPoolExecutor(hosts) as pool:
                return list(
                    pool.map(
                        lambda k: wrk(
                            bases[k],
                            "post_messages.lua",
                            [str(file), str((start + k * part) % SENDERS)],
                            seconds=length,
                            connections=share,
                        ),
                        range(hosts),
                    )
                )

        warmed = drive(warm, offset)
        offset += max(r.requests for r in warmed) + SKIP
        app = sum(tree_cpu_seconds(p) for p in pids)
        db = tree_cpu_seconds(database) if database else None
        runs = drive(seconds, offset)
        app = sum(tree_cpu_seconds(p) for p in pids) - app
        db = tree_cpu_seconds(database) - db if database and db is not None else None
    return runs, app, db, offset + max(r.requests for r in runs) + SKIP


def bench(server: Server, args: Any, logs: Path) -> int:
    seconds, warm = (4, 2) if args.quick else (15, 3)
    senders = senders_file(logs)
    rates: dict[int, list[float]] = {1: [], args.hosts: []}
    cpu: dict[int, list[tuple[float, float | None]]] = {1: [], args.hosts: []}
    offset = 0
    for n in range(1, args.rounds + 1):
        for hosts in (1, args.hosts):
            # A fresh database each time: every run starts from the same empty log.
            url = server.create(f"hosts{hosts}")
            print(f"round {n}, {hosts} host(s) ({load_note()})", flush=True)
            runs, app, db, offset = measure(url, hosts, seconds, warm, logs, (senders, offset))
            total = sum(r.requests for r in runs)
            bad = sum(r.unexpected(201) for r in runs)
            if bad:
                print(f"  {bad:,} answers other than 201")
            rates[hosts].append(sum(r.rps for r in runs))
            cpu[hosts].append((app / total * 1e6, None if db is None else db / total * 1e6))
    rows = []
    for hosts, values in rates.items():
        middle = sorted(range(len(values)), key=values.__getitem__)[len(values) // 2]
        app_us, db_us = cpu[hosts][middle]
        rows.append(
            [
                hosts,
                ", ".join(f"{v:,.0f}" for v in values),
                statistics.median(values),
                f"{app_us:,.0f}",
                "n/a" if db_us is None else f"{db_us:,.0f}",
                f"{statistics.median(values) / statistics.median(rates[1]):.2f}x",
            ]
        )
    print()
    print(
        f"Maximum of POST /messages over all hosts, wrk closed loop, {CONNECTIONS} connections"
        f" shared out, {seconds} s, one granian worker per host, {args.rounds} round(s):"
    )
    print(
        table(
            [
                "hosts",
                "req/s per round",
                "median",
                "app CPU us/req (all hosts)",
                "PostgreSQL CPU us/req",
                "vs one host",
            ],
            rows,
        )
    )
    print(f"after the run: {load_note()}")
    return 0


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=2, help="API hosts (default 2)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --quick)")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    run(f"Hosts: ingest on one host and on {args.hosts}, one database", args, bench)


if __name__ == "__main__":
    main()
