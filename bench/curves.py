"""Cost curves: ingest, query, replay and disk per message as the stored messages grow.

    uv run --group bench python -m bench.curves [--quick] [--sizes 100000,1000000,10000000]

One throwaway database grows to each size in turn (100,000, 1,000,000 and
10,000,000 messages by default; 10,000, 100,000 and 300,000 with --quick).
At each size:
1. the log is grown to the size by COPY: per message an SmsReceived and an
   SmsProcessed, and for a share of them a MediaAttached (the events the
   service writes, tests/support/seed.py), senders Zipf-distributed as in
   `bench.query`;
2. the log is vacuumed and analysed, as autovacuum keeps a log the service
   writes (migration 0013); then every read model is rebuilt from the whole
   log in one pass by `smsq replay`'s code, timed: replay events/s, the
   median of as many replays as fit in REPLAY_SECONDS (at least one: a
   replay of 100,000 messages takes 3 s, and one run of it is noise);
3. `smsq serve` runs on it: GET /messages as `bench.query` measures it
   (from=busiest sender and status=processed, first page and page 1000:
   p99 in an open loop at half the maximum, the median of three runs),
   then POST /messages at its maximum as `bench.ingest` measures it (wrk,
   short runs), each run followed by the same maximum of a fresh server on an
   empty database (a control: the machine's speed just then), PAIRS times;
   the projectors fold what each run wrote before the next one starts;
4. the disk each table and its indexes take, per message stored.

The history loaded by COPY is not verifiable: the hash-chain trigger costs
about 70 us a row, which for the 20,000,000 events of 10,000,000 messages
would add some 25 minutes of a core to the load, so each loading transaction
disables it (as the table's owner, in that transaction only) and writes the
position (from the log's sequence), time, transaction id and a hash of the
right shape itself. Nothing measured reads a hash's value: it is 64 hex
characters either way, the same bytes on disk. The trigger is back on before
the server starts, so the events the measured requests append are chained.

Prints its progress at each size, then tables of the figures and the goals'
verdicts; writes the figures as JSON and a plot (PNG) to --out (docs/ for the
default sizes, bench/results/ otherwise).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import psycopg

from bench.datagen import phones, zipf_senders
from bench.harness import (
    Server,
    arguments,
    disk_read,
    event_loop,
    header,
    load_note,
    machine,
    postgres,
    postmaster,
    stop_on_sigterm,
    table,
    verdict,
)
from bench.ingest import DEFAULT_WORKERS, Maximum, control, maximum, served
from bench.query import http_rates, scenarios, watched_half_load
from bench.rounds import drained
from domain.events import Event, EventMetadata, MediaAttached, SmsProcessed, SmsReceived
from projections.processing import ACTOR as PROCESSING_ACTOR
from tests.support.seed import COPY_COLUMNS, T0, event_row, message_events

SIZES = (100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (10_000, 100_000, 300_000)
MEDIA = 0.05  # share of messages with an image attached
PER_TRANSACTION = 200_000  # events per loading transaction
TOLERANCE = 0.20
HALF_RUNS = 3  # open-loop runs a query's p99 is the median of
SLOW_MS = 100.0  # a query run whose p99 passes this is listed with its loop's share
# Ingest runs at a size, each paired with a control run right after it: the
# machine's speed drifts by 20 % and more within minutes.
PAIRS = 3
REPLAY_SECONDS = 30.0  # replays at a size are repeated until they have taken this long
DOCS = Path(__file__).parent.parent / "docs"
RESULTS = Path(__file__).parent / "results"
QUERIES = (
    "from=busiest, first page",
    "from=busiest, page 1000",
    "status=processed, first page",
    "status=processed, page 1000",
)
# Where the bytes go: each group's tables with their TOAST and their indexes.
GROUPS = {
    "events": ("events",),
    "sms_messages": ("sms_messages",),
    "window tables": ("sender_window", "idempotency_keys"),
    "media tables": ("message_media", "media_blobs"),
    "other": ("message_counters", "seals", "seal_keys", "projection_checkpoints", "api_keys"),
}
# The metadata the service writes: the actor that appends each type, and a
# request id as the server makes them (a UUID): rows of the same size. Their
# correlation id tells the loaded rows from the service's.
LOADED = UUID(int=2)
METADATA = {
    t: msgspec.json.encode(
        EventMetadata(correlation_id=LOADED, causation_id=LOADED, actor=a, request_id=str(LOADED))
    ).decode()
    for t, a in (
        (SmsReceived.TYPE, "anonymous"),
        (SmsProcessed.TYPE, PROCESSING_ACTOR),
        (MediaAttached.TYPE, "anonymous"),
    )
}
_COPY_FILLED = f"COPY events (position, {COPY_COLUMNS}, recorded_at, tx_id, hash) FROM STDIN"
_SIZES = """
SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid)
FROM pg_class AS c WHERE c.relkind = 'r' AND c.relname = ANY(%s)
"""
# The average row of each type among the log's first and last 20,000 events:
# loaded here, or appended by the service (the ingest runs come last).
_ROWS = """
SELECT type, metadata->>'correlation_id' = %s, count(*), avg(pg_column_size(e.*))::float8
FROM ((SELECT * FROM events ORDER BY position LIMIT 20000)
      UNION ALL (SELECT * FROM events ORDER BY position DESC LIMIT 20000)) AS e
GROUP BY 1, 2 ORDER BY 1, 2
"""
_INDEX_SIZES = """
SELECT i.indexrelid::regclass::text, pg_relation_size(i.indexrelid)
FROM pg_index AS i WHERE i.indrelid = ANY(%s::regclass[]) ORDER BY 1
"""


def recorded_at(event: Event) -> datetime:
    """When the service would have appended it: the time the event itself states."""
    match event:
        case SmsReceived():
            return event.received_at
        case SmsProcessed():
            return event.processed_at
        case MediaAttached():
            return event.attached_at
    raise TypeError(f"no time for {event!r}")


def load(conn: psycopg.Connection[Any], events: Iterator[tuple[str, int, Event]]) -> int:
    """COPY events into the log with the trigger off, filling in its columns; returns how many.

    Each transaction turns the trigger off, reserves its positions from the
    log's sequence, writes, and turns the trigger on again: it is never left
    off outside a loading transaction.
    """
    written = 0
    while batch := list(itertools.islice(events, PER_TRANSACTION)):
        with conn.transaction():
            conn.execute("ALTER TABLE events DISABLE TRIGGER events_fill")
            row = conn.execute(
                "SELECT nextval('events_position_seq'), pg_current_xact_id()::text"
            ).fetchone()
            assert row is not None
            first, tx_id = row
            conn.execute("SELECT setval('events_position_seq', %s)", (first + len(batch) - 1,))
            with conn.cursor() as cur, cur.copy(_COPY_FILLED) as copy:
                for n, (stream, version, event) in enumerate(batch):
                    shape = hashlib.sha256(f"{stream}/{version}".encode()).hexdigest()
                    copy.write_row(
                        (
                            first + n,
                            *event_row(stream, version, event, METADATA[event.TYPE]),
                            recorded_at(event),
                            tx_id,
                            shape,
                        )
                    )
            conn.execute("ALTER TABLE events ENABLE TRIGGER events_fill")
        written += len(batch)
    return written


def stored(url: str) -> int:
    """Messages in the log (SmsReceived events), counted by the log's type index."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE type = 'SmsReceived'").fetchone()
    return int(row[0]) if row else 0


def grow(url: str, have: int, target: int, senders: list[str], step: int) -> int:
    """Append messages to the log until it holds `target`; returns the events written."""
    events = message_events(
        target - have,
        seed=1000 + step,
        media=MEDIA,
        start=T0 + timedelta(milliseconds=20 * have),
        from_=zipf_senders(senders, seed=2000 + step),
    )
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.commit()
        return load(conn, events)


async def rebuild(url: str, at_least: float = 0.0) -> dict[str, Any]:
    """Replay every read model from the whole log in one pass, as `smsq replay`
    does, timed, and again until the replays have taken `at_least` seconds
    (events/s: their median; time and disk read: the first's); then move the
    followers that write no read model (the processing stage, the sealer) to
    the end of the log: the loaded messages are processed already, and
    sealing a history whose hashes are not real would prove nothing."""
    from projections.catalog import read_models
    from projections.messages import TABLE as MESSAGES
    from projections.processing import NAME as PROCESSING
    from projections.replay import replay
    from projections.runner import checkpoint_of, ensure_checkpoints, move_checkpoint
    from projections.sealer import NAME as SEALER

    models = read_models()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        runs: list[dict[str, Any]] = []
        while not runs or sum(r["seconds"] for r in runs) < at_least:
            started, read = time.perf_counter(), disk_read()
            folded = await replay(conn, *models.values())
            seconds = time.perf_counter() - started
            runs.append(
                {
                    "events": folded,
                    "seconds": seconds,
                    "events_per_s": folded / seconds,
                    # What the replay had to read from the disks, not from the page
                    # cache (the whole machine's count: run it on a quiet one).
                    "disk_read_bytes": disk_read() - read,
                }
            )
        # The first replay reads the log from the disk where the page cache
        # lost it; the next ones find it cached.
        replayed = {
            "models": list(models),
            **runs[0],
            "events_per_s": statistics.median(r["events_per_s"] for r in runs),
            "runs_events_per_s": [r["events_per_s"] for r in runs],
        }
        # Where the replay ended: the end of the log, as the readers order it.
        end = await checkpoint_of(conn, MESSAGES)
        await ensure_checkpoints(conn, [PROCESSING, SEALER])
        for name in (PROCESSING, SEALER):
            async with conn.transaction():
                await move_checkpoint(conn, name, end)
    return replayed


def disk(url: str) -> dict[str, dict[str, int]]:
    """Per table: its size with TOAST (`table`) and its indexes' (`indexes`)."""
    names = [t for group in GROUPS.values() for t in group]
    with psycopg.connect(url) as conn:
        rows = conn.execute(_SIZES, (names,)).fetchall()
        database = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        indexes = conn.execute(_INDEX_SIZES, (["events", "sms_messages"],)).fetchall()
    sizes: dict[str, dict[str, int]] = {r[0]: {"table": r[1], "indexes": r[2]} for r in rows}
    sizes["database"] = {"table": int(database[0]) if database else 0, "indexes": 0}
    for name, size in indexes:
        sizes[f"index {name}"] = {"table": 0, "indexes": size}
    return sizes


def row_sizes(url: str) -> list[dict[str, Any]]:
    """Average bytes of an event row by type, loaded against appended by the service."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(_ROWS, (str(LOADED),)).fetchall()
    return [
        {"type": t, "source": "loaded" if loaded else "service", "rows": n, "bytes": size}
        for t, loaded, n, size in rows
    ]


def grouped(sizes: dict[str, dict[str, int]]) -> dict[str, int]:
    """Bytes per group of GROUPS, the events' and sms_messages' indexes apart."""
    out = {}
    for group, tables in GROUPS.items():
        if group in ("events", "sms_messages"):
            out[group] = sizes[group]["table"]
            out[f"{group} indexes"] = sizes[group]["indexes"]
        else:
            out[group] = sum(sizes[t]["table"] + sizes[t]["indexes"] for t in tables if t in sizes)
    return out


def measure_queries(
    listen: int, senders: list[str], seconds: float, logs: Path, worker: int
) -> dict[str, Any]:
    results = {}
    loop = event_loop(worker)
    # The list queries only: the curves' log is loaded, not sent, so no message has
    # been through the API for GET /messages/{id}.
    for name, paths, _ in scenarios(senders, []):
        if name not in QUERIES:
            continue
        print(f"  query {name} ({load_note()})", flush=True)
        read = disk_read()
        run, half, _, busy = http_rates(listen, paths, seconds, logs, loop=loop)
        # One stall (a checkpoint, autovacuum, the machine) decides the p99 of
        # a short run: the median of HALF_RUNS runs at the same rate is read.
        watched = [(half, busy)] + [
            watched_half_load(listen, paths, run.rps / 2, seconds, loop)
            for _ in range(HALF_RUNS - 1)
        ]
        halves = [h for h, _ in watched]
        p99s = [h.percentile(99) * 1000 for h in halves]
        results[name] = {
            "max_rps": run.rps,
            "p50_ms": statistics.median(h.percentile(50) * 1000 for h in halves),
            "p99_ms": statistics.median(p99s),
            "p99_runs_ms": p99s,
            # The worker's event-loop thread's share of each run on the CPU: a
            # slow run at 0.9 and up saturated the worker, one well below met a
            # queue behind something else (see bench.query's "loop busy").
            "loop_busy_runs": [b for _, b in watched],
            "not_200": run.unexpected(200) + sum(h.sent - h.statuses.get(200, 0) for h in halves),
            # What the page cache did not hold of the pages the queries read.
            "disk_read_bytes": disk_read() - read,
        }
    return results


def checkpoint(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        print("  (no CHECKPOINT: the role lacks pg_checkpoint; figures may include one)")


def step(
    server: Server,
    url: str,
    target: int,
    n: int,
    senders: list[str],
    ingest: tuple[Path, int],
    args: Any,
) -> tuple[dict[str, Any], int]:
    """Grow to `target`, measure; returns the figures and where the next wrk run starts."""
    logs, (senders_file, offset) = args.logs, ingest
    timings = {}
    have = stored(url)
    print(f"{target:,} messages: loading {target - have:,} ({load_note()})", flush=True)
    started = time.perf_counter()
    loaded = grow(url, have, target, senders, n) if target > have else 0
    timings["grow"] = time.perf_counter() - started
    print(f"  {loaded:,} events in {timings['grow']:.0f} s; vacuuming ({load_note()})", flush=True)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        # What autovacuum keeps doing on a log that grows (migration 0013):
        # the visibility map lets the readers scan its reading order by index only,
        # and no replay pays for the first visit to the rows just loaded.
        conn.execute("VACUUM (ANALYZE) events")
        # The load and the vacuum leave gigabytes of dirty pages at 10,000,000
        # messages: written out now, not by a checkpoint in the middle of the
        # measurements (the suspect in one run's ingest at 0.68x).
        checkpoint(conn)
    timings["vacuum"] = time.perf_counter() - started
    print(f"  replaying ({load_note()})", flush=True)
    started = time.perf_counter()
    replays = asyncio.run(rebuild(url, REPLAY_SECONDS))
    timings["replay"] = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        checkpoint(conn)  # the replays' dirty pages, likewise
    messages = stored(url)
    events_total = replays["events"]
    database = postmaster(url)
    with served("smsq", url, args.workers, logs) as (base, pid):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        listen = int(base.rsplit(":", 1)[1])
        queries = measure_queries(listen, senders, args.query_seconds, logs, pid)
        timings["query"] = time.perf_counter() - started
        started = time.perf_counter()
        pairs: list[tuple[Maximum, Maximum]] = []
        drains = []
        # The machine's speed drifts over the hour the sizes take, and within
        # minutes: a fresh server on an empty database, measured the same way
        # right after each run, says how fast it was just then. It starts after
        # the queries, which have the machine to themselves.
        with control(server, args.workers, logs, f"control_{n}") as (c_base, c_pid, empty):
            c_offset, c_database = 0, postmaster(empty)
            for i in range(1, PAIRS + 1):
                print(
                    f"  ingest maximum, then its control, {i} of {PAIRS} ({load_note()})",
                    flush=True,
                )
                measured, offset = maximum(
                    base, (senders_file, offset), args.ingest_seconds, 2, (pid, database), url
                )
                # At 10,000,000 messages, on a busy machine, folding a maximum run
                # can take minutes.
                drains.append(drained(url, timeout=1800))
                beside, c_offset = maximum(
                    c_base,
                    (senders_file, c_offset),
                    args.ingest_seconds,
                    2,
                    (c_pid, c_database),
                    empty,
                )
                drained(empty, timeout=600)
                pairs.append((measured, beside))
        timings["ingest"] = time.perf_counter() - started
    sizes = disk(url)
    after = stored(url)
    figures = {
        "messages": messages,
        "events": events_total,
        "ingest": ingest_figures(pairs, drains),
        "queries": queries,
        "replay": replays,
        "disk": {"messages": after, "relations": sizes, "groups": grouped(sizes)},
        "event_rows": row_sizes(url),
        "seconds": timings,
        # Other work on the machine moves every rate and latency: the 1-minute
        # load average when the measurements began.
        "load_average": load,
    }
    return figures, offset


def ingest_figures(pairs: list[tuple[Maximum, Maximum]], drains: list[float]) -> dict[str, Any]:
    """The medians of the runs at a size and of their controls; CPU per request
    over all of them; the ratio of each run to its control, whose median is the
    size's speed."""
    runs = [m for m, _ in pairs]
    requests = sum(m.run.requests for m in runs)
    db_cpu = [m.db_cpu for m in runs]
    return {
        "rps": statistics.median(m.run.rps for m in runs),
        "p99_ms": statistics.median(m.run.p99_ms for m in runs),
        "not_201": sum(m.run.unexpected(201) for m in runs),
        "app_cpu_us": sum(m.app_cpu for m in runs) / requests * 1e6,
        "db_cpu_us": None
        if None in db_cpu
        else sum(c for c in db_cpu if c is not None) / requests * 1e6,
        "fold_s": max(drains),
        "control_rps": statistics.median(c.run.rps for _, c in pairs),
        "pairs": [{"rps": m.run.rps, "control_rps": c.run.rps} for m, c in pairs],
        # What the page cache did not hold of the pages the inserts touched.
        "disk_read_bytes": sum(m.disk_read for m in runs),
    }


def report(points: list[dict[str, Any]]) -> None:
    print()
    print("At each size (ingest: wrk max; queries: p99 open loop at half their max, median of 3;")
    print(
        "replay: every read model rebuilt in one pass over the log, the median of the replays"
        f" of {REPLAY_SECONDS:.0f} s, read from disk by the first; disk: bytes per message):"
    )
    rows = []
    for p in points:
        groups, count = p["disk"]["groups"], p["disk"]["messages"]
        rows.append(
            [
                p["messages"],
                p["ingest"]["rps"],
                p["ingest"]["control_rps"],
                p["ingest"]["disk_read_bytes"] / 1e6,
                p["ingest"]["not_201"],
                *(p["queries"][q]["p99_ms"] for q in QUERIES),
                p["replay"]["events_per_s"],
                p["replay"]["disk_read_bytes"] / 1e6,
                sum(groups.values()) / count,
                *(p["seconds"][k] for k in ("grow", "replay", "vacuum", "query", "ingest")),
                p["load_average"],
            ]
        )
    print(
        table(
            [
                "messages",
                "ingest req/s",
                "control req/s",
                "ingest disk read MB",
                "ingest not 201",
                *(f"p99 ms {q}" for q in QUERIES),
                "replay ev/s",
                "replay disk read MB",
                "bytes/message",
                "grow s",
                "replay s",
                "vacuum s",
                "query s",
                "ingest s",
                "load average",
            ],
            rows,
        )
    )
    slow = slow_runs(points)
    print()
    print(
        f"Open-loop query runs whose p99 passed {SLOW_MS:.0f} ms, with the share of the run"
        " the worker's event loop was on the CPU (from about 90 %: the half rate saturated"
        " the worker; well below: a queue behind something else):"
    )
    print(table(["messages", "query", "p99 ms", "loop busy %"], slow) if slow else "none")
    print()
    print("Disk, bytes per message stored (tables with their TOAST; indexes apart):")
    names = list(points[0]["disk"]["groups"])
    print(
        table(
            ["messages", *names, "total", "database"],
            [
                [
                    p["disk"]["messages"],
                    *(p["disk"]["groups"][g] / p["disk"]["messages"] for g in names),
                    sum(p["disk"]["groups"].values()) / p["disk"]["messages"],
                    p["disk"]["relations"]["database"]["table"] / p["disk"]["messages"],
                ]
                for p in points
            ],
        )
    )
    last = points[-1]
    indexes = {k: v["indexes"] for k, v in last["disk"]["relations"].items() if k[:6] == "index "}
    print()
    print(f"Indexes at {last['disk']['messages']:,} messages, bytes per message:")
    print(
        table(
            ["index", "bytes/message"],
            [[k[6:], v / last["disk"]["messages"]] for k, v in indexes.items()],
        )
    )
    print()
    print("Average event row (pg_column_size), loaded by COPY against appended by the service:")
    print(
        table(
            ["type", "source", "rows", "bytes"],
            [[r["type"], r["source"], r["rows"], r["bytes"]] for r in last["event_rows"]],
        )
    )
    print()
    print(
        "The log up to each size was loaded by COPY with its hash-chain trigger off"
        " (hashes of the right shape, not a chain): `smsq verify` would reject it."
        " Sizes and costs are those of a chained log; see bench/README.md."
    )


def slow_runs(points: list[dict[str, Any]]) -> list[list[object]]:
    """Each open-loop query run over SLOW_MS at p99: size, query, p99 and the loop's
    share of the run on the CPU in per cent ("" where it was not read)."""
    rows: list[list[object]] = []
    for p in points:
        for q in QUERIES:
            figures = p["queries"][q]
            # Curves written before the loop's share was read have none.
            busy = figures.get("loop_busy_runs") or [None] * len(figures["p99_runs_ms"])
            for p99, share in zip(figures["p99_runs_ms"], busy, strict=True):
                if p99 > SLOW_MS:
                    rows.append([p["messages"], q, p99, "" if share is None else 100 * share])
    return rows


def speed(point: dict[str, Any]) -> float:
    """The ingest maximum at a size over its controls': the machine's drift taken
    out, run by run (the median of each run over the control right after it)."""
    return float(statistics.median(p["rps"] / p["control_rps"] for p in point["ingest"]["pairs"]))


def goals(points: list[dict[str, Any]]) -> list[list[str]]:
    first, last = points[0], points[-1]
    at = f"at {last['messages']:,} vs {first['messages']:,}"
    ingest = speed(last) / speed(first)
    rows = [
        [
            f"ingest max {at} within 20 %, each over its control",
            f"{ingest:.2f}x",
            verdict(ingest >= 1 - TOLERANCE),
        ],
        [
            f"(ingest max {at} alone; the controls')",
            f"{last['ingest']['rps'] / first['ingest']['rps']:.2f}x;"
            f" {last['ingest']['control_rps'] / first['ingest']['control_rps']:.2f}x",
            "",
        ],
    ]
    for q in QUERIES:
        slower = last["queries"][q]["p99_ms"] / first["queries"][q]["p99_ms"]
        rows.append(
            [f"p99 {q} {at} within 20 %", f"{slower:.2f}x", verdict(slower <= 1 + TOLERANCE)]
        )
    rate = last["replay"]["events_per_s"] / first["replay"]["events_per_s"]
    rows.append(
        [
            f"replay linear (events/s {at} within 20 %)",
            f"{rate:.2f}x",
            verdict(rate >= 1 - TOLERANCE),
        ]
    )
    per_message = [sum(p["disk"]["groups"].values()) / p["disk"]["messages"] for p in points]
    rows.append(
        [
            "bytes per message stated",
            " / ".join(f"{b:,.0f}" for b in per_message),
            "stated",
        ]
    )
    return rows


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [p["messages"] for p in points]
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    loads = ", ".join(f"{p['load_average']:.1f}" for p in points)
    figure.suptitle(
        f"smsq cost curves, {time.strftime('%Y-%m-%d')}: {machine()};"
        f" load average at each size {loads}",
        fontsize="small",
    )
    ingest, query, replay, disk_ax = axes.flat
    ingest.plot(x, [p["ingest"]["rps"] for p in points], marker="o", label="at the size")
    ingest.plot(
        x,
        [p["ingest"]["control_rps"] for p in points],
        marker="x",
        linestyle="--",
        label="control: empty database, just after",
    )
    ingest.legend()
    ingest.set(title="Ingest max, POST /messages", ylabel="requests/s")
    for q in QUERIES:
        query.plot(x, [p["queries"][q]["p99_ms"] for p in points], marker="o", label=q)
    query.set(title="GET /messages p99 at half its max", ylabel="ms")
    query.legend(fontsize="small")
    replay.plot(x, [p["replay"]["events_per_s"] for p in points], marker="o")
    replay.set(title="Replay of every read model, one pass over the log", ylabel="events/s")
    names = list(points[0]["disk"]["groups"])
    per_message = {
        g: [p["disk"]["groups"][g] / p["disk"]["messages"] for p in points] for g in names
    }
    disk_ax.stackplot(x, *per_message.values(), labels=names)
    disk_ax.set(title="Disk per message stored", ylabel="bytes/message")
    disk_ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1, 0.5))
    for ax in axes.flat:
        ax.set_xscale("log")
        ax.set_xlabel("messages stored")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def bench(server: Server, args: Any) -> int:
    url = server.create("curves")
    senders = phones(10_000, seed=3)  # as bench.query: the busiest is senders[0]
    senders_file = args.logs / "senders.txt"
    # As bench.ingest: 100,000 senders cycled, none over the rate limit.
    senders_file.write_text("\n".join(phones(100_000, seed=1)) + "\n")
    points, offset = [], 0
    for n, target in enumerate(args.sizes):
        figures, offset = step(server, url, target, n, senders, (senders_file, offset), args)
        points.append(figures)
        print(
            f"  done: {sum(figures['seconds'].values()):.0f} s for this size;"
            f" database {figures['disk']['relations']['database']['table'] / 2**30:.2f} GiB",
            flush=True,
        )
    report(points)
    print()
    print(table(["goal", "measured", "verdict"], goals(points)))
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / f"{args.name}.json"
    data.write_text(
        json.dumps({"machine": machine(), "sizes": args.sizes, "points": points}, indent=1) + "\n"
    )
    picture = args.out / f"{args.name}.png"
    plot(points, picture)
    print(f"figures: {data}; plot: {picture}")
    if args.keep:
        server.keep(url)
        print(f"the grown database is kept: {url}")
    print(f"median step time per 1,000 messages loaded: {per_thousand(points):.2f} s")
    print(f"after the run: {load_note()}")
    return 0


def per_thousand(points: list[dict[str, Any]]) -> float:
    """Seconds of loading and replaying per 1,000 messages: what the next size will take."""
    return statistics.median(
        float((p["seconds"]["grow"] + p["seconds"]["replay"]) / p["messages"] * 1000)
        for p in points
    )


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.replace("_", "").split(",")],
        help="messages stored at each measurement, ascending"
        " (default 100000,1000000,10000000; 10000,100000,300000 with --quick)",
    )
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="granian workers")
    parser.add_argument(
        "--out",
        type=Path,
        help="where the JSON and the PNG go (default docs/ for the default sizes,"
        " bench/results/ otherwise)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the grown database, to look into afterwards (with --database-url:"
        " an embedded server goes with its temporary directory)",
    )
    args = parser.parse_args()
    if args.keep and not args.database_url:
        parser.error("--keep needs --database-url")
    full = args.sizes is None and not args.quick
    args.sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    if args.sizes != sorted(args.sizes):
        parser.error("--sizes must be ascending")
    args.out = args.out or (DOCS if full else RESULTS)
    args.name = "cost-curves" if full else "cost-curves-" + "-".join(map(str, args.sizes))
    args.query_seconds, args.ingest_seconds = (2, 3) if args.quick else (8, 15)
    stop_on_sigterm()
    with postgres(args.database_url) as server, tempfile.TemporaryDirectory() as tmp:
        args.logs = Path(tmp)
        header("Cost curves: ingest, query, replay and disk as messages accumulate", server)
        raise SystemExit(bench(server, args))


if __name__ == "__main__":
    main()
