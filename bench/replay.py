"""Replay: rebuilding `sms_messages` from 1,000,000 events, against a raw COPY.

    uv run --group bench python -m bench.replay [--quick] [--events N]

The log is seeded with COPY (deterministic, tests/support/seed.py: each
message an SmsReceived and an SmsProcessed, interleaved as a busy log is),
100 events per transaction, as group commits write it.
The replay runs `projections.replay.replay`, what `smsq replay` runs, in a
child process so that its peak RSS is its own. The yardstick then COPYs the
very rows the replay produced, held in Python, into an empty table with the
same indexes, as a client-side bulk load would. At the end, the disk each
relation of the log and of the read model takes, per event.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import psutil
import psycopg

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
from tests.support.seed import copy_events, message_events

CHUNK = 50_000
PER_TRANSACTION = 100


async def child(url: str) -> None:
    """Replay once; print what it took, with the RSS after the first chunk and at the end."""
    from projections.messages import MessagesProjector
    from projections.replay import replay

    me = psutil.Process()
    rss: list[float] = []
    marks: list[float] = []

    def progress(_: int) -> None:
        rss.append(me.memory_info().rss / 2**20)
        marks.append(time.perf_counter())

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        folded = await replay(conn, MessagesProjector(), chunk=CHUNK, progress=progress)
        elapsed = time.perf_counter() - started
    report = {
        "folded": folded,
        "seconds": elapsed,
        # The log's last chunk is folded again at the swap: the bulk ends a mark earlier.
        "folding": marks[-2 if len(marks) > 1 else -1] - started,
        "rss_first": rss[0],
        "rss_last": rss[-1],
    }
    print(json.dumps(report))


def run_child(url: str) -> tuple[dict[str, Any], float, float]:
    """The child's report, its peak RSS (MiB) and its server backend's peak private memory."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.replay", "--child", url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PGAPPNAME": "smsq-bench-replay"},
    )
    backend_peak = 0.0
    with psycopg.connect(url, autocommit=True) as conn:
        while proc.poll() is None:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'smsq-bench-replay'"
            ).fetchone()
            if row:
                try:
                    uss = psutil.Process(row[0]).memory_full_info().uss / 2**20
                    backend_peak = max(backend_peak, uss)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            time.sleep(0.25)
    out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"replay failed ({proc.returncode})")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return json.loads(out.strip().splitlines()[-1]), peak, backend_peak


def raw_copy(url: str) -> tuple[int, float]:
    """COPY the replayed rows, held in Python, into a fresh indexed table; (rows, seconds)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT * FROM sms_messages").fetchall()
        conn.execute("CREATE TABLE copy_target (LIKE sms_messages INCLUDING ALL)")
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy("COPY copy_target FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return len(rows), time.perf_counter() - started


def seed_log(url: str, messages: int) -> int:
    """COPY the log in transactions of `PER_TRANSACTION` events, as group commits write it.

    (Readers order the log by transaction id; one transaction for everything
    would make a log unlike any the service writes.)
    """
    events = message_events(messages, seed=11, processed=1.0)
    written = 0
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.commit()
        while batch := list(itertools.islice(events, PER_TRANSACTION)):
            written += copy_events(conn, iter(batch))
    return written


def bench(server: Server, quick: bool, events: int | None, profile: bool) -> int:
    target = events or (100_000 if quick else 1_000_000)
    url = server.create("replay")
    started = time.perf_counter()
    written = seed_log(url, target // 2)
    seeded = time.perf_counter() - started
    print(f"seeded {written:,} events with COPY in {seeded:.1f} s ({written / seeded:,.0f}/s)")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
    print(f"replaying ({load_note()})", flush=True)
    report, peak_rss, backend_peak = run_child(url)
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM sms_messages").fetchone()
    rows = int(count[0]) if count else 0
    print(f"raw COPY of the same {rows:,} rows ({load_note()})", flush=True)
    copied, copy_seconds = raw_copy(url)
    assert copied == rows

    replay_rate = rows / report["seconds"]
    copy_rate = copied / copy_seconds
    events_rate = report["folded"] / report["seconds"]
    print()
    print(f"Rebuilding sms_messages from {report['folded']:,} events ({rows:,} messages):")
    print(
        table(
            ["path", "seconds", "events/s", "rows/s", "vs raw COPY"],
            [
                [
                    "smsq replay (set-based fold, indexes after)",
                    report["seconds"],
                    events_rate,
                    replay_rate,
                    ratio(replay_rate, copy_rate),
                ],
                [
                    "raw COPY from Python into the indexed table",
                    copy_seconds,
                    "",
                    copy_rate,
                    "1.00x",
                ],
            ],
        )
    )
    folding = report["folding"]
    print(
        f"replay time: {folding:.1f} s folding the log in {CHUNK:,}-event chunks, "
        f"{report['seconds'] - folding:.1f} s building the secondary indexes, swapping, analysing"
    )
    print(
        f"replay memory: client RSS {report['rss_first']:.0f} MiB after the first chunk, "
        f"{report['rss_last']:.0f} MiB at the end, peak {peak_rss:.0f} MiB; "
        f"server backend peak private memory {backend_peak:.0f} MiB"
    )
    print()
    goals = [
        ["replay >= 100,000 events/s", f"{events_rate:,.0f}/s", verdict(events_rate >= 100_000)],
        [
            "replay >= 1.0x raw COPY (same rows)",
            ratio(replay_rate, copy_rate),
            verdict(replay_rate >= copy_rate),
        ],
        [
            "memory flat (client RSS first chunk vs end)",
            f"{report['rss_first']:.0f} -> {report['rss_last']:.0f} MiB",
            verdict(report["rss_last"] <= report["rss_first"] * 1.1),
        ],
    ]
    print(table(["goal", "measured", "verdict"], goals))
    print()
    print(disk(url, written))
    print(f"after the run: {load_note()}")
    if profile:
        print()
        print(f"Where the server spends a {CHUNK:,}-event chunk (EXPLAIN ANALYZE of the fold):")
        print(explain_chunk(url))
    return 0


# Each relation of the log and of the read model: its table (with TOAST) and
# each index, in bytes.
_DISK = """
SELECT t.relname, 'table', pg_table_size(t.oid) FROM pg_class AS t
WHERE t.relname = ANY(%(tables)s) AND t.relkind = 'r'
UNION ALL
SELECT t.relname, i.relname, pg_relation_size(i.oid)
FROM pg_class AS t
JOIN pg_index AS x ON x.indrelid = t.oid
JOIN pg_class AS i ON i.oid = x.indexrelid
WHERE t.relname = ANY(%(tables)s) AND t.relkind = 'r'
ORDER BY 1, 2 DESC
"""
GIB = 2**30


def disk(url: str, events: int) -> str:
    """Bytes per event of the log and the read model, and what that makes at 10^8 and 10^9."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(_DISK, {"tables": ["events", "sms_messages"]}).fetchall()
    lines = []
    for relation, part, size in rows:
        per = size / events
        lines.append([relation, part, size / 2**20, per, per * 1e8 / GIB, per * 1e9 / GIB])
    for relation in ("events", "sms_messages"):
        per = sum(r[2] for r in rows if r[0] == relation) / events
        lines.append([relation, "all", per * events / 2**20, per, per * 1e8 / GIB, per * 1e9 / GIB])
    return (
        f"Disk after the replay, {events:,} events ({events // 2:,} messages); linear to"
        " 100 M and 1 G events (the seed's ids are random UUIDs, the service's are"
        " time-ordered UUIDv7, so its id indexes fill their pages better than these):\n"
        + table(["relation", "part", "MiB", "bytes per event", "GiB at 100 M", "GiB at 1 G"], lines)
    )


def explain_chunk(url: str) -> str:
    """The fold's plan and timings for the log's first chunk, into a scratch shadow table."""
    from psycopg import sql

    from projections.log import START, Checkpoint, range_params
    from projections.messages import FOLD

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT e.tx_id::text, e.position FROM events AS e"
            " ORDER BY e.tx_id, e.position OFFSET %s LIMIT 1",
            (CHUNK - 1,),
        ).fetchone()
        assert row is not None
        conn.execute("SET synchronous_commit = off")
        conn.execute("CREATE TABLE explain_target (LIKE sms_messages INCLUDING DEFAULTS)")
        conn.execute("ALTER TABLE explain_target ADD PRIMARY KEY (id)")
        statement = sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + FOLD.statement(
            {"sms_messages": "explain_target"}
        )
        params = range_params(START, Checkpoint(int(row[0]), row[1]))
        return "\n".join(r[0] for r in conn.execute(statement, params))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        asyncio.run(child(sys.argv[2]))
        return
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, help="events in the log (half of them messages)")
    parser.add_argument(
        "--profile", action="store_true", help="also show the plan and timings of one chunk's fold"
    )
    args = parser.parse_args()
    stop_on_sigterm()
    with postgres(args.database_url) as server:
        header("Replay: rebuilding sms_messages", server)
        raise SystemExit(bench(server, args.quick, args.events, args.profile))


if __name__ == "__main__":
    main()
