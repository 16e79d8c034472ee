"""Rebuild read models from the log into shadow tables, then swap them in.

Readers keep the live table until the swap, which renames the tables and
moves the checkpoint in one short transaction. The rebuild runs the
projector's own fold over large chunks of the log, without secondary
indexes (built after the load), without waiting for each commit to
reach disk (a rebuild can simply be redone) and without autovacuum (each
table is vacuumed once, when full).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import msgspec
import psycopg
from psycopg import sql

from projections.log import START, Checkpoint, next_range
from projections.runner import Projector, announce, ensure_checkpoints, move_checkpoint

SHADOW = "__shadow"
RETIRED = "__retired"

Progress = Callable[[int], None]

# Switched off while the folds run: each then reads its chunk by the log's
# (tx_id, position) index in a bitmap scan. The planner guesses a range's
# size from tx_id's statistics alone, which for a log written in large
# transactions (an import, a bulk load) say millions of rows for a chunk of
# 50,000: it then read the whole log to fold one chunk (84 s at 10,000,000
# messages). And a plain index scan, which it costs the same forward or
# backward, read the heap backward, a page at a time, which the kernel's
# read-ahead cannot help (4 MB/s from a cold disk). A bitmap scan reads the
# chunk's pages in the heap's order, ahead of use. (Only while folding: the
# search for a chunk's end needs its ordered index scan.)
BITMAP_READS = ("enable_seqscan", "enable_indexscan")


class Rebuildable(Projector, Protocol):
    """A projector whose tables can be rebuilt: it folds into any table names."""

    @property
    def tables(self) -> Sequence[str]: ...

    async def rebuild(
        self,
        conn: psycopg.AsyncConnection[Any],
        tables: Mapping[str, str],
        lo: Checkpoint,
        hi: Checkpoint,
    ) -> None: ...


async def events_to_replay(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM events")
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def replay(
    conn: psycopg.AsyncConnection[Any],
    *models: Rebuildable,
    chunk: int = 50_000,
    progress: Progress = lambda _: None,
) -> int:
    """Rebuild `models` from the start of the log in one pass over it; returns
    the events folded.

    Each chunk of the log is folded into every model's shadow tables in one
    transaction, so the log is read once whatever the number of models: a log
    larger than the page cache is read from disk once, not once a model. The
    swap puts every model in place in one transaction.

    `conn` must be in autocommit mode: each chunk commits on its own.
    """
    models = tuple({m.name: m for m in models}.values())  # a model named twice, once
    shadows = {m.name: {t: t + SHADOW for t in m.tables} for m in models}
    tables = [(t, shadow) for of_model in shadows.values() for t, shadow in of_model.items()]
    await ensure_checkpoints(conn, list(shadows))
    await conn.execute("SET synchronous_commit = off")
    # A chunk's fold sorts its events by message; with the default 4 MB a
    # 50,000-event chunk spills that sort to disk.
    await conn.execute("SET work_mem = '64MB'")
    async with conn.transaction():
        for table, shadow in tables:
            await _create_shadow(conn, table, shadow)

    async def fold(lo: Checkpoint, hi: Checkpoint) -> None:
        for setting in BITMAP_READS:
            await conn.execute(sql.SQL("SET {} = off").format(sql.Identifier(setting)))
        for model in models:
            await model.rebuild(conn, shadows[model.name], lo, hi)
        for setting in BITMAP_READS:
            await conn.execute(sql.SQL("RESET {}").format(sql.Identifier(setting)))

    folded, at = 0, START
    while found := await next_range(conn, at, chunk):
        hi, count = found
        async with conn.transaction():
            await fold(at, hi)
        folded, at = folded + count, hi
        progress(count)

    for table, shadow in tables:
        await _vacuum_once(conn, table, shadow)
        await _index_like(conn, table, shadow)

    async with conn.transaction():
        # Holding the leases keeps the live projectors out until the swap is
        # done (taken in one order, as no other session takes two).
        cur = await conn.execute(
            "SELECT 1 FROM projection_checkpoints WHERE name = ANY(%s) ORDER BY name FOR UPDATE",
            (list(shadows),),
        )
        await cur.fetchall()
        while found := await next_range(conn, at, chunk):
            hi, count = found
            await fold(at, hi)
            folded, at = folded + count, hi
            progress(count)
        for table, shadow in tables:
            await _swap(conn, table, shadow)
        for name in shadows:
            await move_checkpoint(conn, name, at)
    for name in shadows:
        await announce(conn, name, at)
    for table, _ in tables:
        await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    await conn.execute("RESET synchronous_commit")
    await conn.execute("RESET work_mem")
    return folded


async def _create_shadow(conn: psycopg.AsyncConnection[Any], table: str, shadow: str) -> None:
    # A shadow left by a replay that died is stale: start it again.
    await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(shadow)))
    await conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            sql.Identifier(shadow), sql.Identifier(table)
        )
    )
    await _grant_like(conn, table, shadow)
    # Vacuumed once, when full (_vacuum_once), not by autovacuum as it fills.
    await conn.execute(
        sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = off)").format(sql.Identifier(shadow))
    )
    # The primary key is needed while folding (upserts find rows by it); the
    # other indexes are built once the bulk of the rows is in.
    for index in await _indexes(conn, table):
        if index.primary:
            await _copy_index(conn, index, table, shadow)


async def _grant_like(conn: psycopg.AsyncConnection[Any], table: str, shadow: str) -> None:
    """Give the shadow the live table's grants: a new table has none, and
    without them the service's own role would lose its read model at the swap."""
    cur = await conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE a.grantee::regrole::text END,"
        " a.privilege_type FROM pg_class c, aclexplode(c.relacl) a"
        " WHERE c.oid = %s::regclass AND a.grantee <> c.relowner",
        (table,),
    )
    for grantee, privilege in await cur.fetchall():
        await conn.execute(
            sql.SQL("GRANT {} ON {} TO {}").format(
                sql.SQL(privilege),
                sql.Identifier(shadow),
                sql.SQL("PUBLIC") if grantee is None else sql.SQL(grantee),
            )
        )


async def _settings_like(conn: psycopg.AsyncConnection[Any], table: str, shadow: str) -> None:
    """Give the shadow the live table's storage settings (how often autovacuum
    analyses it, among them): LIKE copies none, and the swap would drop them."""
    cur = await conn.execute(
        "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = %s::regclass", (table,)
    )
    row = await cur.fetchone()
    if row and row[0]:
        # Each is "name=value" as the catalogue holds it, valid as written.
        settings = sql.SQL(", ").join(sql.SQL(option) for option in row[0])
        await conn.execute(
            sql.SQL("ALTER TABLE {} SET ({})").format(sql.Identifier(shadow), settings)
        )


async def _vacuum_once(conn: psycopg.AsyncConnection[Any], table: str, shadow: str) -> None:
    """Give the full shadow the live table's settings back, then vacuum it.

    Autovacuum would vacuum a shadow again and again as it fills (the read
    models' settings ask for it after every 5 % of new rows: 58 s of the
    other core during a 10,000,000-message replay), and still leave the
    last rows to a pass after the swap, while the table serves: their pages
    are not all-visible until then, so a deep page's ids cost a heap fetch
    each instead of an index-only scan. One pass here, before the other
    indexes exist, marks every page all-visible, on two conditions:
    - each row's insert must be known committed, which PostgreSQL writes on
      the page only once the commit is on disk; the chunks commit without
      waiting for the disk, so the settings are committed waiting for it,
      which puts every earlier commit on disk too;
    - index cleanup is forced: left to itself, VACUUM skips the index when
      few rows are dead, and a page that keeps a dead row's line pointer is
      not all-visible. With only the primary key built yet, that costs one
      scan of it.
    """
    async with conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = on")
        await conn.execute(
            sql.SQL("ALTER TABLE {} RESET (autovacuum_enabled)").format(sql.Identifier(shadow))
        )
        await _settings_like(conn, table, shadow)
    await conn.execute(sql.SQL("VACUUM (INDEX_CLEANUP ON) {}").format(sql.Identifier(shadow)))


class _Index(msgspec.Struct, frozen=True):
    name: str
    definition: str
    primary: bool


async def _indexes(conn: psycopg.AsyncConnection[Any], table: str) -> list[_Index]:
    cur = await conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisprimary FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s::regclass ORDER BY c.relname",
        (table,),
    )
    return [_Index(*row) for row in await cur.fetchall()]


async def _copy_index(
    conn: psycopg.AsyncConnection[Any], index: _Index, table: str, shadow: str
) -> None:
    """Build on the shadow the live table's index, by the same definition."""
    on_table = re.compile(rf" ON (\S+\.)?{re.escape(table)} ")
    definition = index.definition.replace(f" {index.name} ON ", f" {index.name}{SHADOW} ON ", 1)
    definition = on_table.sub(f" ON {shadow} ", definition, count=1)
    await conn.execute(definition.encode())
    if index.primary:
        await conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}").format(
                sql.Identifier(shadow),
                sql.Identifier(index.name + SHADOW),
                sql.Identifier(index.name + SHADOW),
            )
        )


async def _index_like(conn: psycopg.AsyncConnection[Any], table: str, shadow: str) -> None:
    await conn.execute("SET maintenance_work_mem = '256MB'")
    for index in await _indexes(conn, table):
        if not index.primary:
            await _copy_index(conn, index, table, shadow)
    await conn.execute("RESET maintenance_work_mem")


async def _swap(conn: psycopg.AsyncConnection[Any], table: str, shadow: str) -> None:
    """Put the shadow in the live table's place, names of its indexes included.

    (Renaming a primary key's index renames its constraint too.)
    """
    retired = table + RETIRED
    names = [index.name for index in await _indexes(conn, table)]
    await _rename(conn, "TABLE", table, retired)
    await _rename(conn, "TABLE", shadow, table)
    for name in names:
        await _rename(conn, "INDEX", name, name + RETIRED)
        await _rename(conn, "INDEX", name + SHADOW, name)
    await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(retired)))


async def _rename(conn: psycopg.AsyncConnection[Any], kind: str, old: str, new: str) -> None:
    await conn.execute(
        sql.SQL("ALTER {} {} RENAME TO {}").format(
            sql.SQL(kind), sql.Identifier(old), sql.Identifier(new)
        )
    )
