"""Replay rebuilds a read model that equals the incrementally built one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from projections.catalog import read_models
from projections.log import Checkpoint
from projections.messages import MessagesProjector, list_messages, list_statement
from projections.replay import events_to_replay, replay
from projections.runner import catch_up, checkpoint_of
from tests.support.plans import fold_plan, nodes
from tests.support.postgres import Databases
from tests.support.seed import seed_messages


@pytest.fixture(scope="module")
def seeded_url(databases: Databases) -> str:
    url = databases.create()
    seed_messages(url, 6000, processed=0.8, media=0.3)
    return url


@pytest.fixture
async def conn(seeded_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(seeded_url, autocommit=True) as c:
        yield c


async def snapshot(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute("SELECT * FROM sms_messages ORDER BY id")
    return await cur.fetchall()


async def indexes(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sms_messages' ORDER BY 1"
    )
    return await cur.fetchall()


async def settings(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    cur = await conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'sms_messages'::regclass")
    row = await cur.fetchone()
    return sorted(row[0] or []) if row else []


async def test_replay_equals_the_incremental_model_row_by_row(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    # Small batches: the incremental fold meets events whose SmsReceived came
    # in an earlier batch, which the big replay chunks mostly do not.
    await catch_up(conn, MessagesProjector(), batch_size=37)
    incremental, built_indexes = await snapshot(conn), await indexes(conn)
    built_settings = await settings(conn)
    assert built_settings  # the migrations give the read model autovacuum settings
    assert len(incremental) == 6000
    assert {row[5] for row in incremental} == {"stored", "processed"}
    assert any(row[6] > 0 for row in incremental)  # media counted

    folded = await replay(conn, MessagesProjector(), chunk=1000)

    assert folded == 6000 + sum(1 for r in incremental if r[5] == "processed") + sum(
        r[6] for r in incremental
    )
    assert await snapshot(conn) == incremental
    assert await indexes(conn) == built_indexes
    assert await settings(conn) == built_settings
    assert (await checkpoint_of(conn, "sms_messages")).position > 0


async def test_replaying_twice_changes_nothing(conn: psycopg.AsyncConnection[Any]) -> None:
    await replay(conn, MessagesProjector(), chunk=2500)
    first, first_checkpoint = await snapshot(conn), await checkpoint_of(conn, "sms_messages")
    await replay(conn, MessagesProjector(), chunk=700)
    assert await snapshot(conn) == first
    assert await checkpoint_of(conn, "sms_messages") == first_checkpoint
    cur = await conn.execute(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sms_messages__%%'"
    )
    assert await cur.fetchone() == (0,)  # no shadow or retired table left behind


async def tables_of(conn: psycopg.AsyncConnection[Any], models: list[Any]) -> list[Any]:
    rows = []
    for model in models:
        for table in model.tables:
            query = sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier(table))
            rows.append(await (await conn.execute(query)).fetchall())
    return rows


async def test_one_pass_over_the_log_rebuilds_every_model_as_each_alone_and_swaps_them_together(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    models = list(read_models().values())
    assert len(models) > 1
    # The same chunks both ways: the counters' float sums depend on how the
    # log is cut, not on how many models share a pass.
    for model in models:
        await replay(conn, model, chunk=700)
    alone = await tables_of(conn, models)
    assert all(alone)  # every model has rows to compare

    folded = await replay(conn, *models, models[-1], chunk=700)  # named twice: folded once

    assert folded == await events_to_replay(conn)  # the log read once, not once a model
    assert await tables_of(conn, models) == alone
    places = {await checkpoint_of(conn, model.name) for model in models}
    assert len(places) == 1  # every model swapped in at the same place in the log
    cur = await conn.execute(
        "SELECT tablename FROM pg_tables WHERE tablename LIKE '%%\\_\\_shadow'"
        " OR tablename LIKE '%%\\_\\_retired'"
    )
    assert await cur.fetchall() == []


async def test_every_page_of_a_replayed_model_is_all_visible_and_a_deep_page_reads_no_heap(
    databases: Databases,
) -> None:
    url = databases.create()
    seed_messages(url, 3000, processed=0.8, media=0.3)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        # No page can be all-visible to a snapshot older than its rows: here no
        # autovacuum ANALYZE (which holds one) runs beside the replay.
        cur = await conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
        for (table,) in await cur.fetchall():
            await conn.execute(
                sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = off)").format(
                    sql.Identifier(table)
                )
            )
        models = list(read_models().values())
        await replay(conn, *models, chunk=700)

        for model in models:
            for table in model.tables:
                cur = await conn.execute(
                    "SELECT relpages, relallvisible FROM pg_class WHERE oid = %s::regclass",
                    (table,),
                )
                row = await cur.fetchone()
                assert row is not None, table
                pages, visible = row
                assert visible == pages, table
                if table == "sms_messages":
                    assert pages > 10
        # Page 201 of the processed messages: 2,000 index entries skipped, by
        # the index alone (the index's path, which a table this small might not take).
        statement, params = list_statement(status="processed", offset=2000)
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            await conn.execute("SET LOCAL enable_bitmapscan = off")
            cur = await conn.execute(b"EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
            row = await cur.fetchone()
    assert row is not None
    plan = row[0][0]["Plan"]
    scans = [n for n in nodes(plan) if n.get("Index Name") == "sms_messages_status_idx"]
    assert [(n["Node Type"], n["Heap Fetches"]) for n in scans] == [("Index Only Scan", 0)]


class Explained:
    """A model that explains each chunk's fold on the replay's own connection
    before running it: the plan as the replay's session makes it."""

    def __init__(self, model: Any) -> None:
        self.model, self.name, self.tables = model, model.name, model.tables
        self.plans: list[dict[str, Any]] = []
        self.ranges: list[tuple[Checkpoint, Checkpoint]] = []

    async def rebuild(self, conn: Any, tables: Any, lo: Checkpoint, hi: Checkpoint) -> None:
        self.plans.append(await fold_plan(conn, self.model, tables, lo, hi))
        self.ranges.append((lo, hi))
        await self.model.rebuild(conn, tables, lo, hi)


def reads_of_the_log(plan: dict[str, Any]) -> set[str]:
    return {n["Node Type"] for n in nodes(plan) if n.get("Relation Name") == "events"}


async def test_a_chunk_is_read_in_the_heaps_order_however_wrong_the_planners_guess(
    conn: psycopg.AsyncConnection[Any],
) -> None:
    # The seeded log is one transaction: by tx_id's statistics, which are all
    # the planner has for a range of the log, any range holds all of it.
    await conn.execute("ANALYZE events")
    models = [Explained(model) for model in read_models().values()]

    await replay(conn, *models, chunk=700)

    for model in models:
        assert len(model.plans) > 10
        for plan in model.plans:
            assert reads_of_the_log(plan) == {"Bitmap Heap Scan"}, (model.name, plan)
        # Outside the folds the planner is left alone (a range's end is found
        # by the index's order), and on its own it reads a chunk another way:
        # the whole log, or the index's order (on this small log).
        lo, hi = model.ranges[len(model.ranges) // 2]
        alone = await fold_plan(conn, model.model, {t: t for t in model.tables}, lo, hi)
        assert reads_of_the_log(alone) & {"Seq Scan", "Index Scan"}, (model.name, alone)


class Held:
    """A model whose replay stops at the start of its second chunk until `go` is
    set: first in the pass, before the chunk's transaction has written anything,
    so it holds back nothing the live projectors may fold."""

    def __init__(self, model: Any) -> None:
        self.model, self.name, self.tables = model, model.name, model.tables
        self.reached, self.go, self.calls = asyncio.Event(), asyncio.Event(), 0

    async def rebuild(self, conn: Any, tables: Any, lo: Any, hi: Any) -> None:
        self.calls += 1
        if self.calls == 2:
            self.reached.set()
            await self.go.wait()
        await self.model.rebuild(conn, tables, lo, hi)


async def test_events_folded_live_while_a_one_pass_replay_runs_are_in_what_it_swaps_in(
    conn: psycopg.AsyncConnection[Any], seeded_url: str
) -> None:
    models = list(read_models().values())
    held = Held(models[0])
    replaying = asyncio.create_task(replay(conn, held, *models[1:], chunk=500))
    await asyncio.wait_for(held.reached.wait(), 30)
    # The replay is past its first chunk: the log grows, and the live
    # projectors fold what it gained into the live tables meanwhile.
    seed_messages(seeded_url, 300, seed=23, processed=0.5, media=0.3)
    async with await psycopg.AsyncConnection.connect(seeded_url, autocommit=True) as live:
        assert all([await catch_up(live, model, batch_size=50) > 0 for model in models])
    seed_messages(seeded_url, 100, seed=29, processed=0.5)  # and more, not folded live
    held.go.set()
    await asyncio.wait_for(replaying, 60)

    # What was swapped in holds every event, the ones folded live meanwhile
    # included, and each checkpoint is past all of them: the same as each
    # model replayed alone, from the same place.
    swapped = await tables_of(conn, models)
    end = {await checkpoint_of(conn, model.name) for model in models}
    async with await psycopg.AsyncConnection.connect(seeded_url, autocommit=True) as live:
        assert [await catch_up(live, model) for model in models] == [0] * len(models)
    for model in models:
        await replay(conn, model, chunk=500)
    assert swapped == await tables_of(conn, models)
    assert {await checkpoint_of(conn, model.name) for model in models} == end
    assert len(end) == 1


async def test_the_live_projector_carries_on_after_a_replay(
    conn: psycopg.AsyncConnection[Any], seeded_url: str
) -> None:
    await replay(conn, MessagesProjector())
    before = len(await snapshot(conn))
    seed_messages(seeded_url, 50, seed=11, processed=0)
    assert await catch_up(conn, MessagesProjector()) == 50
    assert len(await snapshot(conn)) == before + 50


async def test_queries_keep_answering_while_a_replay_runs(seeded_url: str) -> None:
    answered, failures = 0, []
    done = asyncio.Event()

    async def read(pool: AsyncConnectionPool) -> None:
        nonlocal answered
        while not done.is_set():
            try:
                async with pool.connection() as c:
                    rows = await list_messages(c, limit=10)
                assert len(rows) == 10
                answered += 1
            except Exception as error:  # any failure is the finding
                failures.append(repr(error))
            await asyncio.sleep(0)

    async with AsyncConnectionPool(
        seeded_url, min_size=2, max_size=4, kwargs={"autocommit": True}
    ) as pool:
        readers = [asyncio.create_task(read(pool)) for _ in range(3)]
        async with await psycopg.AsyncConnection.connect(seeded_url, autocommit=True) as c:
            await replay(c, MessagesProjector(), chunk=500)
        done.set()
        await asyncio.gather(*readers)
    assert failures == []
    assert answered > 10
