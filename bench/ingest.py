"""Ingest and projection lag: POST /messages against plain CRUD and an echo ceiling.

    uv run --group bench python -m bench.ingest [--quick] [--workers N]

One run, one machine, one PostgreSQL, the same granian settings for all three:
1. maximum throughput of each server with wrk (closed loop, a new sender on
   every request so the rate limit is never what is measured), in rounds
   that interleave the three servers (3 by default), reporting the median;
2. then, for smsq and plain CRUD, an open-loop run at half of that server's
   own maximum: latency counted from when each request was due, and for
   smsq the time from each 201 to the message's row being visible to
   GET /messages (every 4th message is watched).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
import psycopg

from bench import openloop, profile
from bench.apps import CRUD_TABLE
from bench.datagen import phones
from bench.harness import (
    LoopUse,
    Server,
    arguments,
    disk_read,
    event_loop,
    load_note,
    loop_use,
    port,
    postmaster,
    process,
    ratio,
    run,
    table,
    thread_waits,
    tree_cpu_seconds,
    verdict,
    wait_http,
    waits_since,
    written,
)
from bench.wrk import Run, wrk
from tests.support.servers import SMSQ

# Two cores: one worker process leaves the other core to PostgreSQL and the
# load generator (bench/README.md has the measurements behind this choice).
DEFAULT_WORKERS = 1
CONNECTIONS = 64
WATCH_EVERY = 4
SKIP = 4 * CONNECTIONS
# The profile summary keeps the project's frames and the libraries it leans on.
PROFILE_KEEP = ("api/", "commands/", "domain/", "projections/", "litestar", "psycopg", "msgspec")


@contextmanager
def served(
    kind: str,
    url: str | None,
    workers: int,
    logs: Path,
    settings: Mapping[str, str] = {},
    host: str = "127.0.0.1",
    smsq: str = SMSQ,
) -> Iterator[tuple[str, int]]:
    """Serve `kind` (smsq, crud or echo) on a free port; yield its base URL and pid.

    smsq keeps its data (the seal key) under `logs`; `settings` are more SMSQ_* for it,
    it may listen on another loopback `host`, and be another build's (`smsq`, its
    command)."""
    assert kind == "smsq" or host == "127.0.0.1", "only smsq listens elsewhere"
    listen = port(host)
    log = logs / f"{kind}.log"
    if kind == "smsq":
        argv = [smsq, "serve"]
        env = {
            "SMSQ_DATABASE_URL": url or "",
            "SMSQ_HOST": host,
            "SMSQ_PORT": str(listen),
            "SMSQ_WORKERS": str(workers),
            "SMSQ_LOG_LEVEL": "WARNING",
            "SMSQ_DATA_DIR": str(logs / "data"),
            **settings,
        }
        ready = "/readyz"
    else:
        argv = [sys.executable, "-m", "bench.apps", kind, "--port", str(listen)]
        argv += ["--workers", str(workers)]
        env = {"SMSQ_DATABASE_URL": url or ""}
        ready = "/healthz"
    with process(argv, env=env, log=log) as proc:
        base = f"http://{host}:{listen}"
        wait_http(base + ready, proc, log)
        yield base, proc.pid


@contextmanager
def control(server: Server, workers: int, logs: Path, name: str) -> Iterator[tuple[str, int, str]]:
    """A fresh `smsq serve` on an empty database of its own, dropped afterwards: run
    beside a measurement, its rate says how fast the machine was just then.
    Yields its base URL, pid and database URL; it keeps its files under `logs/name`."""
    url = server.create(name)
    directory = logs / name
    directory.mkdir()
    try:
        with served("smsq", url, workers, directory) as (base, pid):
            yield base, pid, url
    finally:
        server.drop(url)


class Maximum(NamedTuple):
    run: Run
    app_cpu: float
    """CPU seconds the server's processes used during the run."""
    db_cpu: float | None
    """CPU seconds PostgreSQL's processes used (None: the server is not on this machine)."""
    disk_read: int
    """Bytes the machine read from its disks during the run."""
    loop: LoopUse | None
    """What the worker's event-loop thread used during the run (None: not read,
    as with several workers)."""
    waits: int | None = None
    """Times the threads of the server and of PostgreSQL (when on this machine)
    gave up the processor to wait during the run: wake-ups, each a hand-over
    (None: not counted, off Linux)."""
    transactions: int | None = None
    """Transaction ids the database's server handed out during the run: one to
    each transaction that changed or locked a row or sent a notification
    (None: not read, without the database's URL)."""

    def us_a_request(self, cpu: float) -> float:
        """CPU seconds used during the run, in µs a request."""
        return cpu / self.run.requests * 1e6

    def per_request(self, cpu: float | None) -> str:
        return "n/a" if cpu is None else f"{self.us_a_request(cpu):,.0f}"

    def waits_a_request(self) -> str:
        """The server's and PostgreSQL's waits a request, as a table cell."""
        if self.waits is None:
            return "n/a"
        return f"{self.waits / self.run.requests:.1f}"

    def transactions_a_request(self) -> str:
        """Transactions that took an id, a request, as a table cell."""
        if self.transactions is None:
            return "n/a"
        return f"{self.transactions / self.run.requests:.2f}"

    def loop_waits(self) -> str:
        """The loop thread's waits a request, as a table cell."""
        if self.loop is None:
            return "n/a"
        return f"{self.loop.waits / self.run.requests:.2f}"


def maximum(
    base: str,
    senders: tuple[Path, int],
    seconds: float,
    warm: float,
    pids: tuple[int, int | None],
    database_url: str | None,
    spy: Path | None = None,
) -> tuple[Maximum, int]:
    """Warm up, then measure; with `spy`, py-spy samples the server during the measured part.

    `senders` is the file and where to start in it; returns where the next run starts,
    so that across runs each sender comes round again only after the whole list.
    """
    file, offset = senders
    warmed = wrk(
        base, "post_messages.lua", [str(file), str(offset)], seconds=warm, connections=CONNECTIONS
    )
    # Requests still in flight when wrk stopped were sent but not counted: skip
    # past them, or the next run would repeat them (and meet deduplication).
    offset += warmed.requests + SKIP
    if database_url:
        # A new database's tables have no statistics until autovacuum's first
        # ANALYZE, a minute or so in; plans prepared before it (seq scans of
        # tables that were empty) stay until then. Measure the steady state.
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    # Read before the other readings start, and after they end: its connection
    # is not the server's work.
    xid = written(database_url)[1] if database_url else None
    server, database = pids
    loop = event_loop(server)
    start = None if loop is None else loop_use(loop)
    sampler = profile.record(server, seconds, spy) if spy else None
    app, db = tree_cpu_seconds(server), tree_cpu_seconds(database) if database else None
    waiting = both_waits(server, database)
    read = disk_read()
    try:
        run = wrk(
            base,
            "post_messages.lua",
            [str(file), str(offset)],
            seconds=seconds,
            connections=CONNECTIONS,
        )
    finally:
        if sampler is not None:
            sampler.wait()
    app = tree_cpu_seconds(server) - app
    db = tree_cpu_seconds(database) - db if database and db is not None else None
    waits = waits_between(waiting, both_waits(server, database))
    end = None if loop is None else loop_use(loop)
    looped = None if start is None or end is None else end.since(start)
    transactions = written(database_url)[1] - xid if database_url and xid is not None else None
    measured = Maximum(run, app, db, disk_read() - read, looped, waits, transactions)
    return measured, offset + run.requests + SKIP


def both_waits(server: int, database: int | None) -> dict[int, int] | None:
    """The waits so far of each of the server's threads and PostgreSQL's (see
    `thread_waits`; thread ids are the system's, so the two never collide)."""
    served = thread_waits(server)
    if served is None:
        return None
    return {**served, **(thread_waits(database) or {} if database else {})}


def waits_between(before: dict[int, int] | None, after: dict[int, int] | None) -> int | None:
    """The waits between two readings of `both_waits` (None where not counted)."""
    return None if before is None or after is None else waits_since(before, after)


class Watch:
    """Every few 201s, the moment the message's row shows in the read model."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pending: dict[UUID, float] = {}
        self.lags: list[float] = []
        self.closing = False
        self.backend: int | None = None
        """The PostgreSQL process answering its polls, once connected."""

    def on_response(self, i: int, status: int, body: bytes, at: float) -> None:
        if status == 201 and i % WATCH_EVERY == 0:
            self.pending[UUID(msgspec.json.decode(body)["id"])] = at

    async def run(self, deadline_after_close: float = 30) -> int:
        """Poll until closed and nothing is pending; returns how many never showed."""
        loop = asyncio.get_running_loop()
        give_up = None
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            self.backend = conn.info.backend_pid
            while not (self.closing and not self.pending):
                if self.closing and give_up is None:
                    give_up = loop.time() + deadline_after_close
                if give_up is not None and loop.time() > give_up:
                    break
                if self.pending:
                    polled = loop.time()
                    cur = await conn.execute(
                        "SELECT id FROM sms_messages WHERE id = ANY(%s)", (list(self.pending),)
                    )
                    for (found,) in await cur.fetchall():
                        self.lags.append(max(0.0, polled - self.pending.pop(found)))
                await asyncio.sleep(0.002)
        return len(self.pending)


async def half_load(
    base: str, rate: float, seconds: float, senders: list[str], watch: Watch | None
) -> tuple[openloop.Result, int]:
    host, listen = base.removeprefix("http://").split(":")

    def build(i: int) -> bytes:
        body = msgspec.json.encode(
            {"from": senders[i % len(senders)], "to": "+447911123456", "message": f"half {i}"}
        )
        return openloop.post("/messages", body)

    watcher = asyncio.create_task(watch.run()) if watch else None
    result = await openloop.run(
        host,
        int(listen),
        rate=rate,
        seconds=seconds,
        build=build,
        on_response=watch.on_response if watch else None,
    )
    missing = 0
    if watch and watcher:
        watch.closing = True
        missing = await watcher
    return result, missing


def caught_up(url: str, timeout: float = 120) -> None:
    """Wait until every projector has folded everything committed (the max run's backlog)."""
    import time

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM events e"
                " WHERE (e.tx_id, e.position) > (c.tx_id, c.position))), count(*)"
                " FROM projection_checkpoints c"
            ).fetchone()
            if row is not None and row[0] == 0 and row[1] >= 2:
                return
            time.sleep(0.2)
    raise RuntimeError(f"projectors did not catch up within {timeout} s")


def backlog(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(max((SELECT count(*) FROM events e"
            " WHERE (e.tx_id, e.position) > (c.tx_id, c.position))), 0)"
            " FROM projection_checkpoints c"
        ).fetchone()
    return int(row[0]) if row else 0


SENDERS = 100_000


def senders_file(directory: Path) -> Path:
    """The senders the wrk script posts from, cycled through across every run: at
    up to 5,000 req/s a sender comes round again after 20 s at the soonest, 3 times
    a minute, under the limit of 5."""
    path = directory / "senders.txt"
    path.write_text("\n".join(phones(SENDERS, seed=1)) + "\n")
    return path


def median_run(runs: list[Maximum]) -> Maximum:
    return sorted(runs, key=lambda m: m.run.rps)[len(runs) // 2]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def bench(server: Server, args: Any, logs: Path) -> int:
    seconds, warm, half_seconds = (5, 2, 8) if args.quick else (15, 3, 20)
    crud_url = server.create("crud")
    with psycopg.connect(crud_url, autocommit=True) as conn:
        conn.execute(CRUD_TABLE)
    smsq_url = server.create("ingest")
    senders = senders_file(logs)
    half_senders = phones(10_000 if args.quick else 40_000, seed=2)

    raw = (args.profile or logs) / "ingest-smsq.pyspy.txt"
    rounds: dict[str, list[Maximum]] = {"echo": [], "crud": [], "smsq": []}
    database = postmaster(smsq_url)
    halves: dict[str, openloop.Result] = {}
    half_cpu: dict[str, float] = {}
    half_waits: dict[str, int | None] = {}
    half_transactions: dict[str, int] = {}
    watch = Watch(smsq_url)
    missing = 0
    behind = 0
    offset = 0
    # Rounds interleave the servers, so a burst of other work on the machine
    # lands on all three rather than on one; the medians are reported.
    for round_ in range(1, args.rounds + 1):
        last = round_ == args.rounds
        for kind, url in (("echo", None), ("crud", crud_url), ("smsq", smsq_url)):
            with served(kind, url, args.workers, logs) as (base, pid):
                print(f"round {round_}, {kind}: maximum ({load_note()})", flush=True)
                spy = raw if args.profile and kind == "smsq" and last else None
                measured, offset = maximum(
                    base, (senders, offset), seconds, warm, (pid, database), url, spy
                )
                rounds[kind].append(measured)
                if kind == "echo" or not last:
                    continue
                if kind == "smsq":
                    behind = backlog(smsq_url)
                    caught_up(smsq_url)
                rate = statistics.median(m.run.rps for m in rounds[kind]) / 2
                print(f"{kind}: open loop at {rate:,.0f}/s ({load_note()})", flush=True)
                assert url is not None
                xid = written(url)[1]
                busy, waits = tree_cpu_seconds(pid), both_waits(pid, database)
                halves[kind], missed = asyncio.run(
                    half_load(
                        base, rate, half_seconds, half_senders, watch if kind == "smsq" else None
                    )
                )
                half_cpu[kind] = tree_cpu_seconds(pid) - busy
                # Not the lag watcher's: its PostgreSQL process may outlive the
                # connection by a moment, and would count in full as a new thread.
                after = both_waits(pid, database)
                if after is not None and watch.backend is not None:
                    after.pop(watch.backend, None)
                half_waits[kind] = waits_between(waits, after)
                half_transactions[kind] = written(url)[1] - xid
                missing += missed
    maxima = {kind: median_run(runs) for kind, runs in rounds.items()}
    runs = {kind: m.run for kind, m in maxima.items()}

    print()
    rows = []
    for kind, label in (
        ("echo", "echo (decode only)"),
        ("crud", "plain CRUD (decode + INSERT)"),
        ("smsq", "smsq POST /messages"),
    ):
        r, m = runs[kind], maxima[kind]
        rows.append(
            [
                label,
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.describe_unexpected(201),
                m.per_request(m.app_cpu),
                m.per_request(None if m.loop is None else m.loop.cpu),
                m.loop_waits(),
                m.per_request(m.db_cpu),
                m.waits_a_request(),
                m.transactions_a_request(),
                ratio(runs["smsq"].rps, r.rps),
                " / ".join(f"{x.run.rps:,.0f}" for x in rounds[kind]),
            ]
        )
    print(
        f"Maximum, wrk closed loop, {CONNECTIONS} connections, {seconds} s, "
        f"{args.workers} granian worker(s), median of {args.rounds} round(s):"
    )
    print(
        table(
            [
                "server",
                "req/s",
                "p50 ms",
                "p99 ms",
                "not 201",
                "app CPU us/req",
                "event loop CPU us/req",
                "loop waits/req",
                "PostgreSQL CPU us/req",
                "waits/req",
                "transactions/req",
                "smsq / this",
                "req/s by round",
            ],
            rows,
        )
    )
    print()
    rows = []
    for kind in ("crud", "smsq"):
        h = halves[kind]
        rows.append(
            [
                kind,
                h.rate,
                h.achieved,
                h.percentile(50) * 1000,
                h.percentile(99) * 1000,
                h.sent - h.statuses.get(201, 0),
                f"{100 * half_cpu[kind] / h.elapsed:.0f} %",
                f"{half_cpu[kind] / max(1, h.sent) * 1e6:,.0f}",
                "n/a" if (w := half_waits[kind]) is None else f"{w / max(1, h.sent):.1f}",
                f"{half_transactions[kind] / max(1, h.sent):.2f}",
                f"{100 * h.cpu_share:.0f} %",
            ]
        )
    print(f"Half of each server's maximum, open loop, {half_seconds} s:")
    print(
        table(
            [
                "server",
                "target/s",
                "done/s",
                "p50 ms",
                "p99 ms",
                "not 201",
                "server CPU (of one core)",
                "app CPU us/req",
                "waits/req",
                "transactions/req",
                "generator CPU",
            ],
            rows,
        )
    )
    print()
    lag_p50, lag_p99 = pct(watch.lags, 50) * 1000, pct(watch.lags, 99) * 1000
    print(
        f"Projection lag (201 → row visible to GET /messages), {len(watch.lags)} messages watched"
        f" at half load: p50 {lag_p50:.1f} ms, p99 {lag_p99:.1f} ms, max"
        f" {max(watch.lags, default=0) * 1000:.1f} ms; never visible within 30 s: {missing}"
    )
    print(f"Backlog right after the maximum run: {behind:,} events not yet folded by a projector")
    print()
    smsq, crud, echo = runs["smsq"].rps, runs["crud"].rps, runs["echo"].rps
    p99_half = halves["smsq"].percentile(99) * 1000
    goals = [
        ["smsq ≥ 1.0x plain CRUD", ratio(smsq, crud), verdict(smsq >= crud)],
        ["stretch: smsq ≥ 0.3x echo", ratio(smsq, echo), verdict(smsq >= 0.3 * echo)],
        ["p99 ≤ 25 ms at half load", f"{p99_half:.1f} ms", verdict(p99_half <= 25)],
        ["projection lag p99 ≤ 100 ms", f"{lag_p99:.1f} ms", verdict(lag_p99 <= 100)],
    ]
    return profile.conclude(
        goals, raw if args.profile else None, "its maximum run", keep=PROFILE_KEEP
    )


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="granian workers")
    parser.add_argument(
        "--rounds",
        type=int,
        help="maximum runs per server, interleaved; the median is reported"
        " (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample smsq serve with py-spy during its maximum run; raw stacks go to DIR",
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    run("Ingest: POST /messages", args, bench)


if __name__ == "__main__":
    main()
