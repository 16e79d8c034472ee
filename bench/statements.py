"""Where PostgreSQL's time goes at the ingest maximum, against plain CRUD.

    uv run --group bench python -m bench.statements [--quick] [--readings N] [--seconds S]

Each reading runs smsq and plain CRUD (taking turns at going first) and then
echo, the servers of `bench.ingest`. For smsq and CRUD: a database of their
own, a maximum to warm plans and caches (smsq's projectors then catch up),
`pg_stat_statements` reset, a maximum as `bench.ingest`'s (its warm-up
included), smsq's projectors left to fold everything it caused. Every
statement's time (planning, tracked for this database, and running: wall
time, waits on locks and for a core included) and the write-ahead log it
wrote are divided by the messages stored since the reset and grouped by what
the statement does; the write-ahead log of the same span is read back too
(`pg_walinspect`) and divided by table (its rows, its indexes' entries and
the whole pages written after a checkpoint) and by kind of record. Echo's
maximum gives the bare cost of decoding and answering a request.

The last table asks what goal 1 (ingest at plain CRUD's rate) leaves smsq's
own work in the API, if the CPU a request sets the maximum: CRUD's CPU a
request, less smsq's PostgreSQL's (during the maximum: what its projectors
fold after it is not counted, so this leaves the API more than it would
have), less echo's, against what smsq's app spends beyond echo's.

`pg_stat_statements` must be loaded when the server starts: the embedded
server is started with it; one given by `--database-url` must have it in its
`shared_preload_libraries`, run on this machine (its CPU is read), and be
given as a superuser (the extension and its reset ask for one).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bench.apps import CRUD_TABLE
from bench.harness import Server, arguments, load_note, postmaster, run, table
from bench.ingest import maximum, senders_file, served
from bench.rounds import drained

CRUD = "plain CRUD's INSERT"
# What each statement does, by its text (the first pattern that matches).
# A batch of `POST /messages` writes its window rows and keys in its append's
# statement, after the check of its senders' windows under their locks: all
# of that counts as the append. The window's read (with a keyed batch's keys)
# is the other group.
GROUPS = (
    ("the append to the log", r"INSERT INTO events\b"),
    ("the messages fold", r"^WITH batch AS \( SELECT \(data->>"),
    (
        "the counters fold",
        r"WITH batch AS MATERIALIZED \( SELECT stream_id, type, data FROM \"current_events\"",
    ),
    ("the sender's window and the locks", r"sender_window|pg_advisory_xact_lock|lock_keys"),
    ("the projectors' lease", r"SELECT lease\.tx_id"),
    ("the processing stage's reads", r"^SELECT position, tx_id::text AS tx_text"),
    (
        "the sealer, checkpoints, media fold, the rest of the followers",
        r"\bseals\b|SELECT r\.n, r\.first|projection_checkpoints|WITH attached AS",
    ),
    (CRUD, r"INSERT INTO crud_messages\b"),
)
OTHER = "the rest"
# The benchmark's own after the reset (its analysis and its reading of the
# log's place come before): the reset, its counts, its wait for the
# projectors (bench.rounds), this read of the statistics.
LEFT_OUT = (
    "SELECT pg_stat_statements_reset(",
    "SELECT count(*) FROM sms_messages",
    "SELECT count(*) FROM crud_messages",
    "SELECT count(*) FROM projection_checkpoints AS c CROSS JOIN LATERAL",
    "SELECT regexp_replace(query,",
)

# This database's statistics only: others on the server keep theirs.
_RESET = """
SELECT pg_stat_statements_reset(
    0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0
)
"""

# Every block of this database (and of the catalogs all databases share) that
# the write-ahead log changed between two places, by the table it belongs to
# (an index's or a TOAST table's, its table's) and whether it is an index.
# Blocks of a relation gone since (dropped, or rewritten) have no table.
_WAL_BY_TABLE = """
WITH here AS (SELECT oid FROM pg_database WHERE datname = current_database()),
blocks AS (
    SELECT pg_filenode_relation(b.reltablespace, b.relfilenode) AS rel,
           b.block_data_length, b.block_fpi_length
    FROM pg_get_wal_block_info(%(start)s::pg_lsn, %(end)s::pg_lsn, false) AS b, here
    WHERE b.reldatabase IN (0, here.oid)
)
SELECT coalesce(owner.relname, t.relname, %(gone)s), i.indexrelid IS NOT NULL, count(*),
       sum(b.block_data_length), sum(b.block_fpi_length)
FROM blocks AS b
LEFT JOIN pg_index AS i ON i.indexrelid = b.rel
LEFT JOIN pg_class AS t ON t.oid = coalesce(i.indrelid, b.rel)
LEFT JOIN pg_class AS owner ON owner.reltoastrelid = t.oid
GROUP BY 1, 2
"""
GONE = "(a relation gone since)"

# The log's records between two places, by kind: PostgreSQL's own names
# (Btree/INSERT_LEAF: an index entry; Heap/UPDATE: a row's new version that
# needed new index entries, Heap/HOT_UPDATE one that did not).
_WAL_RECORDS = """
SELECT "resource_manager/record_type", count, combined_size
FROM pg_get_wal_stats(%(start)s::pg_lsn, %(end)s::pg_lsn, true)
WHERE count > 0
"""

_STATEMENTS = """
SELECT regexp_replace(query, '\\s+', ' ', 'g'), total_plan_time + total_exec_time, wal_bytes
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def group_of(query: str) -> str | None:
    """The group a statement's text belongs to; None for the benchmark's own."""
    text = " ".join(query.split())
    if text.startswith(LEFT_OUT):
        return None
    return next((name for name, pattern in GROUPS if re.search(pattern, text)), OTHER)


class TableWal(NamedTuple):
    """The write-ahead log a message stored caused in one table and its indexes."""

    row_bytes: float = 0.0
    """Changes to the table's own blocks (its rows)."""
    index_bytes: float = 0.0
    index_changes: float = 0.0
    """Changes to index blocks: about one a new entry, more at a page split."""
    page_bytes: float = 0.0
    """Whole pages, written at a block's first change after a checkpoint."""

    @property
    def bytes(self) -> float:
        return self.row_bytes + self.index_bytes + self.page_bytes


def wal_by_table(
    rows: Iterable[tuple[str, bool, int, int, int]], messages: int
) -> dict[str, TableWal]:
    """`_WAL_BY_TABLE`'s rows (table, is an index, blocks, data, full pages), a message."""
    tables: dict[str, TableWal] = {}
    for name, is_index, blocks, data, pages in rows:
        was = tables.get(name, TableWal())
        data_, pages_ = float(data) / messages, float(pages) / messages
        tables[name] = (
            was._replace(
                index_bytes=was.index_bytes + data_,
                index_changes=was.index_changes + blocks / messages,
                page_bytes=was.page_bytes + pages_,
            )
            if is_index
            else was._replace(row_bytes=was.row_bytes + data_, page_bytes=was.page_bytes + pages_)
        )
    return tables


class Reading(NamedTuple):
    rps: float
    app_us: float
    """CPU a request of the server's processes during the maximum."""
    db_us: float
    """CPU a request of PostgreSQL's processes during the maximum."""
    groups: dict[str, tuple[float, float]]
    """Statement time (µs) and WAL (bytes) a message stored, by group."""
    wal: float
    """All the write-ahead log a message stored, from the reset until the
    projectors are done: the whole server's (on the embedded server, this
    reading's database alone works), autovacuum's and checkpoints' too."""
    tables: dict[str, TableWal]
    """Of it, by table (empty where `pg_walinspect` cannot be had)."""
    records: dict[str, tuple[float, float]]
    """Its records a message and their bytes a message, by kind, the whole
    server's like `wal` (empty where `tables` is)."""

    @property
    def statements_us(self) -> float:
        return sum(us for us, _ in self.groups.values())

    @property
    def wal_bytes(self) -> float:
        return sum(wal for _, wal in self.groups.values())


class Left(NamedTuple):
    """What matching plain CRUD's CPU a request leaves smsq's own work in the API."""

    left_us: float
    spent_us: float

    @property
    def share(self) -> float:
        return self.left_us / self.spent_us


def left_for_own_work(smsq: Reading, crud: Reading, echo_us: float) -> Left:
    return Left(crud.app_us + crud.db_us - smsq.db_us - echo_us, smsq.app_us - echo_us)


def reading(server: Server, kind: str, seconds: float, logs: Path) -> Reading:
    # smsq serve migrates its own database; CRUD's table is shaped on the read model.
    url = server.create(f"statements_{kind}", migrated=kind == "crud")
    stored = "sms_messages" if kind == "smsq" else "crud_messages"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        dbname = sql.Identifier(str(conninfo_to_dict(url)["dbname"]))
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET pg_stat_statements.track_planning = on").format(dbname)
        )
        if kind == "crud":
            conn.execute(CRUD_TABLE)
        walinspect = try_walinspect(conn)
    database = postmaster(url)
    if database is None:
        raise SystemExit("bench.statements reads PostgreSQL's CPU: it must run on this machine")
    senders = senders_file(logs)
    with served(kind, url, 1, logs) as (base, pid):
        _, offset = maximum(base, (senders, 0), 3, 2, (pid, database), url)
        if kind == "smsq":
            drained(url, timeout=600)
        with psycopg.connect(url, autocommit=True) as conn:
            # The statistics a measured maximum needs, made before the span.
            conn.execute("ANALYZE")
            start = lsn(conn, "pg_current_wal_insert_lsn")
            conn.execute(_RESET)
            before = _count(conn, stored)
        measured, _ = maximum(base, (senders, offset), seconds, 1, (pid, database), None)
        if kind == "smsq":
            drained(url, timeout=600)
        with psycopg.connect(url, autocommit=True) as conn:
            messages = _count(conn, stored) - before
            rows = conn.execute(_STATEMENTS).fetchall()
            if messages == 0 or measured.run.requests == 0:
                raise SystemExit(f"{kind} stored no message in its maximum: see {logs}")
            # What is written is read back only once it is on disk.
            end = lsn(conn, "pg_current_wal_flush_lsn")
            diff = conn.execute("SELECT %s::pg_lsn - %s::pg_lsn", (end, start)).fetchone()
            assert diff is not None
            tables, records = wal_of(conn, start, end, messages) if walinspect else ({}, {})
    # Nothing of it (its autovacuum) is to run into the next reading's span.
    server.drop(url)
    groups: dict[str, tuple[float, float]] = {}
    for query, ms, wal in rows:
        name = group_of(query)
        if name is not None:
            us, bytes_ = groups.get(name, (0.0, 0.0))
            groups[name] = (us + float(ms) * 1e3 / messages, bytes_ + float(wal) / messages)
    return Reading(
        measured.run.rps,
        measured.us_a_request(measured.app_cpu),
        measured.us_a_request(measured.db_cpu or 0.0),
        groups,
        float(diff[0]) / messages,
        tables,
        records,
    )


_WAL_COLUMNS = [
    "table",
    "rows' bytes",
    "indexes' bytes",
    "index block changes",
    "whole pages' bytes",
    "bytes in all",
]


def wal_rows(side: list[Reading]) -> list[list[str]]:
    """The table's rows: each table of the first reading's, most bytes first,
    then their sum and the log's whole length (records' headers, commits)."""

    def line(name: str, each: list[TableWal]) -> list[str]:
        return [
            name,
            _cells(w.row_bytes for w in each),
            _cells(w.index_bytes for w in each),
            _cells((w.index_changes for w in each), ",.1f"),
            _cells(w.page_bytes for w in each),
            _cells(w.bytes for w in each),
        ]

    first = side[0].tables
    rows = []
    for name in sorted(first, key=lambda n: -first[n].bytes):
        each = [r.tables.get(name, TableWal()) for r in side]
        if max(w.bytes for w in each) >= 1:
            rows.append(line(name, each))
    rows.append(
        line(
            "all tables", [TableWal(*map(sum, zip(*r.tables.values(), strict=True))) for r in side]
        )
    )
    rows.append(["the whole log", "", "", "", "", _cells(r.wal for r in side)])
    return rows


def record_rows(side: list[Reading], most: int = 10) -> list[list[str]]:
    """The `most` kinds of record with the most bytes in the first reading, then
    every record together."""
    first = side[0].records
    rows = []
    for kind in sorted(first, key=lambda k: -first[k][1])[:most]:
        each = [r.records.get(kind, (0.0, 0.0)) for r in side]
        rows.append([kind, _cells((n for n, _ in each), ",.2f"), _cells(b for _, b in each)])
    totals = [tuple(map(sum, zip(*r.records.values(), strict=True))) or (0, 0) for r in side]
    rows.append(
        ["all records", _cells((n for n, _ in totals), ",.2f"), _cells(b for _, b in totals)]
    )
    return rows


def _cells(values: Iterable[float], form: str = ",.0f") -> str:
    """One cell for the readings' values."""
    return " / ".join(format(v, form) for v in values)


def try_walinspect(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server has `pg_walinspect` with its blocks' function (PostgreSQL 16
    on; a contributed module, not always installed)."""
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    except (
        psycopg.errors.FeatureNotSupported,  # not installed (PostgreSQL 15 on)
        psycopg.errors.UndefinedFile,  # not installed (before)
        psycopg.errors.InsufficientPrivilege,
    ):
        row = None
    else:
        row = conn.execute(
            "SELECT to_regprocedure('pg_get_wal_block_info(pg_lsn, pg_lsn, boolean)')"
        ).fetchone()
    if row is None or row[0] is None:
        print("no pg_walinspect with pg_get_wal_block_info here: no write-ahead log by table")
        return False
    return True


def wal_of(
    conn: psycopg.Connection[Any], start: str, end: str, messages: int
) -> tuple[dict[str, TableWal], dict[str, tuple[float, float]]]:
    """The log between `start` and `end` (`pg_walinspect`), a message: by table, and
    its records by kind."""
    span = {"start": start, "end": end, "gone": GONE}
    tables = wal_by_table(conn.execute(_WAL_BY_TABLE, span).fetchall(), messages)
    records = {
        kind: (count / messages, float(size) / messages)
        for kind, count, size in conn.execute(_WAL_RECORDS, span).fetchall()
    }
    return tables, records


def lsn(conn: psycopg.Connection[Any], function: str) -> str:
    row = conn.execute(f"SELECT {function}()::text").fetchone()
    assert row is not None
    return str(row[0])


def _count(conn: psycopg.Connection[Any], table_name: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table_name}").fetchone()
    return int(row[0]) if row else 0


def echo_cost(seconds: float, logs: Path) -> float:
    """Echo's app CPU a request at its maximum."""
    with served("echo", None, 1, logs) as (base, pid):
        measured, _ = maximum(base, (senders_file(logs), 0), seconds, 1, (pid, None), None)
    return measured.us_a_request(measured.app_cpu)


def bench(server: Server, args: Any, logs: Path) -> int:
    readings: list[tuple[Reading, Reading, float]] = []
    for number in range(args.readings):
        order = ("smsq", "crud") if number % 2 == 0 else ("crud", "smsq")
        got: dict[str, Reading] = {}
        for kind in order:
            print(f"reading {number + 1}, {kind} ({load_note()})", flush=True)
            got[kind] = reading(server, kind, args.seconds, logs)
        print(f"reading {number + 1}, echo ({load_note()})", flush=True)
        readings.append((got["smsq"], got["crud"], echo_cost(args.seconds, logs)))

    print()
    names = [name for name, _ in GROUPS if name != CRUD] + [OTHER]
    rows = []
    for name in names:
        cells = [r[0].groups.get(name, (0.0, 0.0)) for r in readings]
        rows.append(
            [
                name,
                " / ".join(f"{us:,.1f}" for us, _ in cells),
                " / ".join(
                    f"{us / r[0].statements_us:.0%}"
                    for (us, _), r in zip(cells, readings, strict=True)
                ),
                " / ".join(f"{wal:,.0f}" for _, wal in cells),
            ]
        )
    smsqs, cruds = [r[0] for r in readings], [r[1] for r in readings]
    for label, side in (("all of smsq's statements", smsqs), ("plain CRUD's statements", cruds)):
        rows.append(
            [
                label,
                " / ".join(f"{r.statements_us:,.1f}" for r in side),
                "",
                " / ".join(f"{r.wal_bytes:,.0f}" for r in side),
            ]
        )
    print(
        f"PostgreSQL's statements a message stored, reading by reading ({args.seconds:g} s maxima):"
    )
    print(table(["statement", "µs a message", "share", "WAL bytes a message"], rows))
    print()
    for label, side in (("smsq", smsqs), ("plain CRUD", cruds)):
        if side[0].tables:
            print(f"{label}: the write-ahead log a message stored, by table, reading by reading:")
            print(table(_WAL_COLUMNS, wal_rows(side)))
            print(f"{label}: its records a message, by kind:")
            print(table(["record", "records a message", "bytes a message"], record_rows(side)))
            print()
    rows = []
    for i, (smsq, crud, echo_us) in enumerate(readings, start=1):
        left = left_for_own_work(smsq, crud, echo_us)
        rows.append(
            [
                str(i),
                f"{smsq.rps:,.0f} ({smsq.app_us:,.0f} + {smsq.db_us:,.0f} µs)",
                f"{crud.rps:,.0f} ({crud.app_us:,.0f} + {crud.db_us:,.0f} µs)",
                f"{echo_us:,.0f}",
                f"{smsq.statements_us / crud.statements_us:.1f}x",
                f"{smsq.db_us / crud.db_us:.1f}x",
                f"{left.left_us:,.0f}",
                f"{left.spent_us:,.0f}",
                f"{left.share:.0%}",
            ]
        )
    print("At plain CRUD's CPU a request, what smsq's own work in the API would have:")
    print(
        table(
            [
                "reading",
                "smsq req/s (app + PostgreSQL CPU)",
                "CRUD req/s",
                "echo app µs",
                "statements, smsq / CRUD",
                "PostgreSQL CPU, smsq / CRUD",
                "left beyond echo µs",
                "spent beyond echo µs",
                "left / spent",
            ],
            rows,
        )
    )
    shares = [left_for_own_work(*r).share for r in readings]
    print(f"left / spent, median {statistics.median(shares):.0%}; after the run: {load_note()}")
    return 0


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, help="readings (default 2, 1 with --quick)")
    parser.add_argument(
        "--seconds", type=float, help="each maximum's length (default 8, 3 with --quick)"
    )
    args = parser.parse_args()
    args.readings = args.readings or (1 if args.quick else 2)
    args.seconds = args.seconds or (3 if args.quick else 8)
    run("PostgreSQL's statements at the ingest maximum", args, bench, ("pg_stat_statements",))


if __name__ == "__main__":
    main()
