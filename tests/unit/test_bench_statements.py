"""bench.statements sorts PostgreSQL's statements by what they do, from the
service's own statement texts, and works out what goal 1 leaves the API."""

from __future__ import annotations

import pytest

from bench.rounds import _BEHIND
from bench.statements import _STATEMENTS, OTHER, Reading, group_of, left_for_own_work
from commands.event_store import _INSERT as APPEND
from commands.receive_sms import _REMEMBER, _WINDOW
from projections.messages import _FOLD as MESSAGES_FOLD


def one_line(statement: str) -> str:
    """As pg_stat_statements shows a statement, parameters numbered."""
    return " ".join(statement.split()).replace("%s", "$1")


def test_the_services_statements_are_sorted_by_what_they_do() -> None:
    assert group_of(one_line(APPEND)) == "the append to the log"
    assert group_of(one_line(_WINDOW)) == "the sender's window and the locks"
    assert group_of(one_line(_REMEMBER)) == "the sender's window and the locks"
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
    assert group_of("ANALYZE") is None
    assert group_of("SELECT count(*) FROM sms_messages") is None
    assert (
        group_of("SELECT pg_stat_statements_reset($1, (SELECT oid FROM pg_database), $2)") is None
    )
    assert group_of(one_line(_BEHIND)) is None
    assert group_of(one_line(_BEHIND).replace("LIMIT 1", "LIMIT $1")) is None
    assert group_of(one_line(_STATEMENTS)) is None
    assert group_of("SELECT 1 FROM something_new") == OTHER


def reading(app_us: float, db_us: float) -> Reading:
    return Reading(rps=1_000, app_us=app_us, db_us=db_us, groups={})


def test_what_crud_cpu_leaves_is_its_cpu_less_smsq_database_and_echo() -> None:
    left = left_for_own_work(reading(680, 364), reading(431, 120), echo_us=166)
    assert left.left_us == pytest.approx(431 + 120 - 364 - 166)
    assert left.spent_us == pytest.approx(680 - 166)
    assert left.share == pytest.approx(21 / 514)
