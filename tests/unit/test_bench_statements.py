"""bench.statements sorts PostgreSQL's statements by what they do, from the
service's own statement texts, and works out what goal 1 leaves the API."""

from __future__ import annotations

import pytest

from bench.rounds import _BEHIND
from bench.statements import (
    _STATEMENTS,
    OTHER,
    Reading,
    TableWal,
    group_of,
    left_for_own_work,
    record_rows,
    wal_by_table,
    wal_rows,
)
from commands.event_store import _INSERT as APPEND
from commands.handler import _LOCK
from commands.receive_sms import _ACCEPT, _WINDOW_ALONE, _WINDOW_AND_KEYS
from projections.messages import _FOLD as MESSAGES_FOLD


def one_line(statement: str) -> str:
    """As pg_stat_statements shows a statement, parameters numbered."""
    return " ".join(statement.split()).replace("%s", "$1")


def test_the_services_statements_are_sorted_by_what_they_do() -> None:
    assert group_of(one_line(APPEND)) == "the append to the log"
    assert group_of(one_line(_WINDOW_ALONE)) == "the sender's window and the locks"
    # A keyed batch's keys are read with its windows.
    assert group_of(one_line(_WINDOW_AND_KEYS)) == "the sender's window and the locks"
    # The window's rows, the keys and the events go in together.
    assert group_of(one_line(_ACCEPT)) == "the append to the log"
    # Every other writer's locks (the processing stage's on its streams).
    assert group_of(one_line(_LOCK)) == "the sender's window and the locks"
    fold = MESSAGES_FOLD.format(
        events='"current_events"',
        sms_messages="sms_messages",
        in_range="true",
        received="'SmsReceived'",
        processed="'SmsProcessed'",
        attached="'MediaAttached'",
    )
    assert group_of(one_line(fold)) == "the messages fold"


def test_the_counters_fold_is_found_with_its_names_quoted() -> None:
    fold = (
        'WITH batch AS MATERIALIZED ( SELECT stream_id, type, data FROM "current_events"'
        ' WHERE true ) INSERT INTO "message_counters" AS t (id) SELECT 1'
    )
    assert group_of(fold) == "the counters fold"


def test_the_benchmarks_own_statements_are_left_out_and_the_unknown_kept() -> None:
    assert group_of("SELECT count(*) FROM sms_messages") is None
    assert (
        group_of("SELECT pg_stat_statements_reset($1, (SELECT oid FROM pg_database), $2)") is None
    )
    assert group_of(one_line(_BEHIND)) is None
    assert group_of(one_line(_BEHIND).replace("LIMIT 1", "LIMIT $1")) is None
    assert group_of(one_line(_STATEMENTS)) is None
    assert group_of("SELECT 1 FROM something_new") == OTHER


def reading(app_us: float, db_us: float) -> Reading:
    return Reading(rps=1_000, app_us=app_us, db_us=db_us, groups={}, wal=0.0, tables={}, records={})


def test_what_crud_cpu_leaves_is_its_cpu_less_smsq_database_and_echo() -> None:
    left = left_for_own_work(reading(680, 364), reading(431, 120), echo_us=166)
    assert left.left_us == pytest.approx(431 + 120 - 364 - 166)
    assert left.spent_us == pytest.approx(680 - 166)
    assert left.share == pytest.approx(21 / 514)


def test_the_blocks_of_a_table_and_its_indexes_add_up_to_its_figures_a_message() -> None:
    tables = wal_by_table(
        [
            ("events", False, 200, 114_000, 800),
            ("events", True, 1_000, 60_000, 1_600),
            ("sender_window", False, 100, 7_000, 0),
        ],
        messages=100,
    )
    assert tables["events"] == TableWal(
        row_bytes=1_140, index_bytes=600, index_changes=10, page_bytes=24
    )
    assert tables["events"].bytes == pytest.approx(1_764)
    assert tables["sender_window"] == TableWal(row_bytes=70)


def test_the_log_table_lists_the_first_readings_tables_by_size_then_the_totals() -> None:
    def side(tables: dict[str, TableWal], wal: float) -> Reading:
        return Reading(rps=1, app_us=1, db_us=1, groups={}, wal=wal, tables=tables, records={})

    first = side({"small": TableWal(row_bytes=10), "big": TableWal(index_bytes=900)}, 1_000)
    second = side({"big": TableWal(index_bytes=800), "new": TableWal(row_bytes=5)}, 900)
    rows = wal_rows([first, second])
    assert [row[0] for row in rows] == ["big", "small", "all tables", "the whole log"]
    assert rows[0][2] == "900 / 800"
    assert rows[1][1] == "10 / 0"
    assert rows[2][-1] == "910 / 805"
    assert rows[3][-1] == "1,000 / 900"


def test_the_records_table_lists_the_kinds_with_most_bytes_then_all_records() -> None:
    def side(records: dict[str, tuple[float, float]]) -> Reading:
        return Reading(rps=1, app_us=1, db_us=1, groups={}, wal=0.0, tables={}, records=records)

    first = side({"Heap/INSERT": (4.0, 1_400.0), "Btree/INSERT_LEAF": (22.0, 1_900.0)})
    second = side({"Btree/INSERT_LEAF": (21.5, 1_850.0), "Heap/INSERT": (3.9, 1_380.0)})
    rows = record_rows([first, second], most=1)
    assert rows == [
        ["Btree/INSERT_LEAF", "22.00 / 21.50", "1,900 / 1,850"],
        ["all records", "26.00 / 25.40", "3,300 / 3,230"],
    ]
