from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from migrations import applied_migrations, available, migrate
from migrations.runner import Migration
from tests.support.postgres import Databases, unique_name


def empty_database(databases: Databases) -> str:
    return databases.create_empty(unique_name("smsq_empty"))


def test_a_second_run_applies_nothing(databases: Databases) -> None:
    url = empty_database(databases)
    assert migrate(url) == [m.name for m in available()]
    assert migrate(url) == []


def test_processes_migrating_at_once_apply_each_migration_exactly_once(
    databases: Databases,
) -> None:
    url = empty_database(databases)
    with ThreadPoolExecutor(max_workers=4) as executor:
        runs = list(executor.map(lambda _: migrate(url), range(4)))
    # One runner did all the work; the others waited on the lock and found none.
    assert sorted(len(r) for r in runs) == [0, 0, 0, len(available())]
    with psycopg.connect(url) as conn:
        assert set(applied_migrations(conn)) == {m.name for m in available()}
        row = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert row == (len(available()),)


def test_a_failing_migration_leaves_nothing_half_applied(databases: Databases) -> None:
    url = empty_database(databases)
    good = Migration("0001_good", "CREATE TABLE good (x int)")
    bad = Migration("0002_bad", "CREATE TABLE half (x int); SELECT no_such_function()")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(url, migrations=[good, bad])
    with psycopg.connect(url) as conn:
        assert applied_migrations(conn) == {"0001_good": good.checksum}
        tables = conn.execute("SELECT to_regclass('good'), to_regclass('half')").fetchone()
    assert tables == ("good", None)
