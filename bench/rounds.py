"""Ingest as data accumulates: one `smsq serve` that keeps its data, round after round.

    uv run --group bench python -m bench.rounds [--quick] [--rounds N] [--seconds S]

`bench.ingest` starts a fresh server for every measurement, which hides any
cost that grows with what the server has stored. Here one server, on one
database, takes N rounds of POST /messages at full load (wrk, closed loop, a
new sender on every request as in `bench.ingest`); between rounds the
projectors are left to fold the whole backlog, so each round starts level.
Nothing is analysed or vacuumed by hand: the server runs as it would in
production. Per round: req/s, CPU per request of the server's processes and
of PostgreSQL, and the sequential scans of the tables that grow; at the end
the totals of `pg_stat_user_tables` for those tables.

The machine's speed drifts by 10-20 % from one minute to the next (other
work, the kernel's memory management), as much as the goal allows. So after
each round, and its folding, a control runs: a fresh server on an empty
database, warmed 2 s and measured as long as a round. Its rate says how fast
the machine was just then, and the round's rate over the control's is the
round's speed with the drift taken out.

Goal: the last round's rate within 10 % of the first's, each over its
control, read on the least-squares line through every round (one round's
figure still moves by some 10 % either way).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from bench.harness import (
    Server,
    arguments,
    load_note,
    postmaster,
    run,
    table,
    tree_cpu_seconds,
    verdict,
)
from bench.ingest import CONNECTIONS, DEFAULT_WORKERS, SKIP, control, senders_file, served
from bench.wrk import Run, wrk

# The tables whose size grows with the messages stored (or, for the write-side
# ones, with the rate sustained): a sequential scan of any of them costs more
# every round.
GROWING = (
    "events",
    "sender_window",
    "idempotency_keys",
    "sms_messages",
    "message_media",
    "media_blobs",
)
TOLERANCE = 0.10

# Per table: sequential scans, rows they read, index scans, live rows, analysed.
_STATS = """
SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_live_tup,
       greatest(last_analyze, last_autoanalyze) IS NOT NULL
FROM pg_stat_user_tables WHERE relname = ANY(%s)
"""

# The oldest projector's distance from the end of the log, in events: a lateral
# probe of the reading-order index per checkpoint (no scan of the log).
_BEHIND = """
SELECT count(*) FROM projection_checkpoints AS c
CROSS JOIN LATERAL (
    SELECT 1 FROM events AS e WHERE (e.tx_id, e.position) > (c.tx_id, c.position)
    ORDER BY e.tx_id, e.position LIMIT 1
) AS ahead
"""


class TableStats(NamedTuple):
    seq_scan: int
    seq_rows: int
    idx_scan: int
    live: int
    analysed: bool


def stats(url: str) -> dict[str, TableStats]:
    with psycopg.connect(url, autocommit=True) as conn:
        # Counters reach the shared statistics a moment after a backend's
        # transaction ends; a second is longer than that delay.
        time.sleep(1.0)
        rows = conn.execute(_STATS, (list(GROWING),)).fetchall()
    return {r[0]: TableStats(*r[1:]) for r in rows}


def drained(url: str, timeout: float = 300) -> float:
    """Wait until every projector has folded everything committed; returns the seconds."""
    start = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - start < timeout:
            row = conn.execute(_BEHIND).fetchone()
            if row is not None and row[0] == 0:
                return time.monotonic() - start
            time.sleep(0.2)
    raise RuntimeError(f"projectors did not catch up within {timeout} s")


class Round(NamedTuple):
    rps: float
    control_rps: float
    requests: int
    not_201: str
    p99_ms: float
    app_us: float
    db_us: float | None
    drain_s: float
    seq_scans: dict[str, int]
    seq_rows: dict[str, int]
    window_rows: int
    events: int
    load: float


def control_rate(server: Server, args: Any, logs: Path, senders: Path, n: int) -> float:
    """The rate of a fresh server on an empty database, warmed first."""
    with control(server, args.workers, logs, f"control_{n}") as (base, _, _):
        warmed = post(base, senders, 0, args.warm)
        return post(base, senders, warmed.requests + SKIP, args.seconds).rps


def post(base: str, senders: Path, offset: int, seconds: float) -> Run:
    """POST /messages at full load, from the senders after `offset`."""
    args = [str(senders), str(offset)]
    return wrk(base, "post_messages.lua", args, seconds=seconds, connections=CONNECTIONS)


def fitted_change(speeds: list[float]) -> float:
    """The last round over the first on the least-squares line through every
    round's speed: one round's figure moves by some 10 % either way even over
    its control, so two rounds alone would give a verdict by chance."""
    slope, intercept = statistics.linear_regression(range(1, len(speeds) + 1), speeds)
    return (intercept + slope * len(speeds)) / (intercept + slope)


def bench(server: Server, args: Any, logs: Path) -> int:
    url = server.create("rounds")
    senders = senders_file(logs)
    database = postmaster(url)
    rounds: list[Round] = []
    with served("smsq", url, args.workers, logs) as (base, pid):
        warmed = post(base, senders, 0, args.warm)
        offset = warmed.requests + SKIP
        drained(url)
        for n in range(1, args.rounds + 1):
            print(f"round {n} ({load_note()})", flush=True)
            load = os.getloadavg()[0]
            before = stats(url)
            app, db = tree_cpu_seconds(pid), tree_cpu_seconds(database) if database else None
            try:
                run = post(base, senders, offset, args.seconds)
            except subprocess.CalledProcessError as error:
                # The server's log goes with the temporary directory: show its end.
                tail = (logs / "smsq.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"wrk failed: {error.stdout}\n{error.stderr}\n{tail}") from error
            offset += run.requests + SKIP
            drain = drained(url)
            # The whole cost of the round's messages, folding included: how much
            # of it falls inside the round depends on how busy the machine is.
            app = tree_cpu_seconds(pid) - app
            db = tree_cpu_seconds(database) - db if database and db is not None else None
            after = stats(url)
            rounds.append(
                Round(
                    rps=run.rps,
                    control_rps=control_rate(server, args, logs, senders, n),
                    requests=run.requests,
                    not_201=run.describe_unexpected(201),
                    p99_ms=run.p99_ms,
                    app_us=app / run.requests * 1e6,
                    db_us=None if db is None else db / run.requests * 1e6,
                    drain_s=drain,
                    seq_scans={t: after[t].seq_scan - before[t].seq_scan for t in GROWING},
                    seq_rows={t: after[t].seq_rows - before[t].seq_rows for t in GROWING},
                    window_rows=after["sender_window"].live,
                    events=after["events"].live,
                    load=load,
                )
            )
        final = stats(url)

    print()
    print(
        f"One smsq serve, {args.rounds} rounds of {args.seconds} s at full load (wrk,"
        f" {CONNECTIONS} connections, {args.workers} granian worker(s)), backlog folded"
        " between rounds; CPU per request over the round and the folding after it; after"
        " each, a control (a fresh server, empty database) and the round's rate over it:"
    )
    rows = []
    for n, r in enumerate(rounds, start=1):
        scanned = ", ".join(
            f"{t} {r.seq_scans[t]:,} ({r.seq_rows[t]:,} rows)" for t in GROWING if r.seq_scans[t]
        )
        rows.append(
            [
                n,
                r.rps,
                r.control_rps,
                f"{r.rps / r.control_rps:.2f}",
                r.p99_ms,
                r.not_201,
                f"{r.app_us:,.0f}",
                "n/a" if r.db_us is None else f"{r.db_us:,.0f}",
                r.drain_s,
                r.events,
                r.window_rows,
                r.load,
                scanned or "none",
            ]
        )
    print(
        table(
            [
                "round",
                "req/s",
                "control req/s",
                "over control",
                "p99 ms",
                "not 201",
                "app CPU us/req",
                "PostgreSQL CPU us/req",
                "fold s",
                "events",
                "sender_window rows",
                "load (1 min)",
                "seq scans of growing tables (rows read)",
            ],
            rows,
        )
    )
    print()
    print("pg_stat_user_tables at the end (the whole run, warm-up included):")
    print(
        table(
            ["table", "seq scans", "rows read by them", "index scans", "live rows", "analysed"],
            [
                [t, s.seq_scan, s.seq_rows, s.idx_scan, s.live, "yes" if s.analysed else "never"]
                for t, s in final.items()
            ],
        )
    )
    print()
    first, last = rounds[0], rounds[-1]
    speeds = [r.rps / r.control_rps for r in rounds]
    trend = fitted_change(speeds)
    goal = f"round {len(rounds)} within {TOLERANCE:.0%} of round 1, each over its control"
    print(
        table(
            ["goal", "measured", "verdict"],
            [
                [
                    f"{goal}, on the line fitted to every round",
                    f"{trend:.2f}x",
                    verdict(trend >= 1 - TOLERANCE),
                ]
            ],
        )
    )
    print(
        f"(round {len(rounds)} over round 1 alone: {speeds[-1] / speeds[0]:.2f}x over the"
        f" controls, {last.rps / first.rps:.2f}x in rates; the controls':"
        f" {last.control_rps / first.control_rps:.2f}x)"
    )
    print(f"after the run: {load_note()}")
    return 0


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument(
        "--rounds", type=int, help="rounds at full load (default 6, 3 with --quick)"
    )
    parser.add_argument(
        "--seconds", type=float, help="length of a round (default 6, 3 with --quick)"
    )
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="granian workers")
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 6)
    if args.rounds < 2:
        parser.error("--rounds: at least 2, to compare the last with the first")
    args.seconds = args.seconds or (3 if args.quick else 6)
    args.warm = 2
    run("Ingest over rounds: one server that keeps its data", args, bench)


if __name__ == "__main__":
    main()
