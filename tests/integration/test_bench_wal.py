"""bench.statements reads the write-ahead log back by table: a table's rows,
its indexes' entries and its TOAST counted as its own, and the whole pages
written at a block's first change after a checkpoint."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from bench.statements import GONE, lsn, try_walinspect, wal_of
from tests.support.postgres import OwnServer, own_server

ROWS = 100


@pytest.fixture(scope="module")
def server() -> Iterator[OwnServer]:
    """A server of this module's own with PostgreSQL's durable defaults, as the
    benchmarks run it (the suite's servers write no whole pages and flush no
    commit)."""
    with own_server() as own:
        yield own


@pytest.fixture(scope="module")
def durable(server: OwnServer) -> Iterator[psycopg.Connection[object]]:
    """A connection to it, with pg_walinspect."""
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        assert try_walinspect(conn), "the embedded server comes with pg_walinspect"
        yield conn


def test_a_tables_log_is_its_rows_its_indexes_and_its_toast(
    durable: psycopg.Connection[object],
) -> None:
    conn = durable
    conn.execute("CREATE TABLE chunked (id int PRIMARY KEY, label text, body text)")
    conn.execute("CREATE INDEX chunked_label_idx ON chunked (label)")
    # Stored out of line and uncompressed: two TOAST chunks a row.
    conn.execute("ALTER TABLE chunked ALTER body SET STORAGE EXTERNAL")
    start = lsn(conn, "pg_current_wal_insert_lsn")
    conn.execute(
        "INSERT INTO chunked SELECT n, 'label ' || n, repeat('x', 3000)"
        " FROM generate_series(1, %s) AS n",
        (ROWS,),
    )
    tables, records = wal_of(conn, start, lsn(conn, "pg_current_wal_flush_lsn"), ROWS)
    assert not [name for name in tables if name.startswith(("chunked_", "pg_toast"))], tables
    chunked = tables["chunked"]
    # The row and its two chunks, the body's 3,000 bytes among them.
    assert 3_000 < chunked.row_bytes < 3_500
    # An entry in the key, the label's index and the TOAST index (two chunks).
    assert 4 <= chunked.index_changes < 4.5
    # By kind of record: an entry each (a page split logs its entry as the split),
    # a row each (the first on a new page as INSERT+INIT).
    assert records["Btree/INSERT_LEAF"][0] == pytest.approx(4, rel=0.05)
    heap = sum(n for kind, (n, _) in records.items() if kind.startswith("Heap/INSERT"))
    assert heap == pytest.approx(3)


def test_the_first_change_after_a_checkpoint_writes_the_whole_page(
    durable: psycopg.Connection[object],
) -> None:
    conn = durable
    conn.execute("CREATE TABLE paged (id int PRIMARY KEY, label text)")
    conn.execute(
        "INSERT INTO paged SELECT n, 'label ' || n FROM generate_series(1, %s) AS n", (ROWS,)
    )
    conn.execute("CHECKPOINT")
    start = lsn(conn, "pg_current_wal_insert_lsn")
    conn.execute("UPDATE paged SET label = label || '!' WHERE id = 1")
    tables, _ = wal_of(conn, start, lsn(conn, "pg_current_wal_flush_lsn"), 1)
    # The heap page (8 kB, less the free space PostgreSQL leaves out of the image).
    assert tables["paged"].page_bytes > 1_000


def test_only_this_databases_blocks_and_the_shared_catalogs_count(
    server: OwnServer, durable: psycopg.Connection[object]
) -> None:
    conn = durable
    start = lsn(conn, "pg_current_wal_insert_lsn")
    conn.execute("CREATE DATABASE elsewhere")  # a row of pg_database, shared by all
    with psycopg.connect(server.url("elsewhere"), autocommit=True) as other:
        other.execute("CREATE TABLE busy (body text)")
        other.execute("INSERT INTO busy SELECT repeat('y', 1000) FROM generate_series(1, 1000)")
    conn.execute("CREATE TABLE here (id int)")  # rows of this database's pg_class, mapped
    tables, _ = wal_of(conn, start, lsn(conn, "pg_current_wal_flush_lsn"), 1)
    assert "pg_database" in tables
    assert "pg_class" in tables
    assert GONE not in tables
    # The other database wrote a megabyte and more in the span, counted nowhere.
    assert sum(w.bytes for w in tables.values()) < 100_000
