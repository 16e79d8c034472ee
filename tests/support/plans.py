"""A statement's plan as the server runs it: prepared, and planned generically.

psycopg prepares a statement on the server once it has run a few times on a
connection; from then on PostgreSQL may reuse one plan made without looking at
the parameters (a generic plan). Such a plan cannot use what a parameter
holds: an index that a value-specific plan finds can go unused. So a plan is
checked here the way the service ends up running it: the statement is
prepared with the parameter types psycopg sends, and explained with
`plan_cache_mode = force_generic_plan`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg._queries import PostgresQuery  # how psycopg itself turns %s into $n
from psycopg.adapt import Transformer

from projections.fold import SqlFold
from projections.log import Checkpoint, range_params

Statement = str | bytes | sql.Composable

_NAME = b"plan_under_test"


def generic_plan(
    conn: psycopg.Connection[Any], statement: Statement, params: Any = None
) -> dict[str, Any]:
    """The plan of `statement` prepared as psycopg prepares it, planned generically.

    Run through libpq directly: psycopg would otherwise prepare the SET,
    EXPLAIN and DEALLOCATE below after a few runs, like any statement.
    """
    query = PostgresQuery(Transformer(conn))
    query.convert(statement, params)
    pgconn = conn.pgconn
    _check(pgconn.exec_(b"SET plan_cache_mode = force_generic_plan"))
    _check(pgconn.prepare(_NAME, query.query, query.types))
    try:
        # EXECUTE takes its arguments as literals; they are coerced to the types
        # the statement was prepared with, so the plan is the prepared one.
        arguments = ", ".join(
            sql.Literal(v).as_string(conn) for v in _ordered(conn, statement, params)
        )
        explain = f"EXPLAIN (FORMAT JSON) EXECUTE {_NAME.decode()}"
        if arguments:
            explain += f"({arguments})"
        result = pgconn.exec_(explain.encode())
        _check(result)
    finally:
        _check(pgconn.exec_(b"DEALLOCATE " + _NAME))
        _check(pgconn.exec_(b"RESET plan_cache_mode"))
    document = json.loads(result.get_value(0, 0) or b"null")
    return dict(document[0]["Plan"])


def nested_plans(
    conn: psycopg.Connection[Any], statement: Statement, params: Any = None
) -> list[tuple[str, dict[str, Any]]]:
    """The plans of the statements a function runs when `statement` calls it,
    each with its text, planned generically as a function's kept plans may be.

    A function's statements are planned and cached inside the server, out of
    reach of EXPLAIN: auto_explain logs each as it runs, sent back to this
    connection as notices (loading it takes a superuser, as the tests' are).
    """
    logged: list[str] = []

    def keep(diagnostic: psycopg.errors.Diagnostic) -> None:
        if diagnostic.severity_nonlocalized == "LOG" and diagnostic.message_primary:
            logged.append(diagnostic.message_primary)

    settings = {
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_nested_statements": "on",
        "auto_explain.log_format": "json",
        "plan_cache_mode": "force_generic_plan",
        "client_min_messages": "log",
    }
    conn.execute("LOAD 'auto_explain'")
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    conn.add_notice_handler(keep)
    try:
        conn.execute(statement, params)
    finally:
        conn.remove_notice_handler(keep)
        for name in settings:
            conn.execute(sql.SQL("RESET {}").format(sql.Identifier(*name.split("."))))
    documents = [json.loads(text.partition("plan:")[2]) for text in logged if "plan:" in text]
    return [(d["Query Text"], dict(d["Plan"])) for d in documents]


class Recording(psycopg.AsyncConnection[Any]):
    """A connection that keeps every statement it is given, with its parameters.

    The statements under test are taken from running the service's own code,
    so a statement changed there is the one tested here.
    """

    statements: list[tuple[Statement, Any, bool]]

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        """Records whether the statement may be prepared (`prepare=False` says never)."""
        self.statements.append((query, params, kwargs.get("prepare") is not False))
        return await super().execute(query, params, **kwargs)


def custom_plan(
    conn: psycopg.Connection[Any], statement: Statement, params: Any = None
) -> dict[str, Any]:
    """The plan of a statement that is never prepared: made for the values it is given."""
    if isinstance(statement, sql.Composable):
        statement = statement.as_string(conn)
    if isinstance(statement, bytes):
        statement = statement.decode()
    row = conn.execute(f"EXPLAIN (FORMAT JSON) {statement}".encode(), params).fetchone()
    assert row is not None
    document = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    return dict(document[0]["Plan"])


async def fold_plan(
    conn: psycopg.AsyncConnection[Any],
    fold: SqlFold,
    tables: Mapping[str, str],
    lo: Checkpoint,
    hi: Checkpoint,
) -> dict[str, Any]:
    """The plan of `fold`'s statement for the range (lo, hi], folding into
    `tables`, made for these values by this connection as its settings stand."""
    statement = b"EXPLAIN (FORMAT JSON) " + fold.statement(tables).as_bytes(conn)
    cur = await conn.execute(statement, {**range_params(lo, hi), **fold.params})
    row = await cur.fetchone()
    assert row is not None
    return dict(row[0][0]["Plan"])


def _ordered(conn: psycopg.Connection[Any], statement: Statement, params: Any) -> list[Any]:
    """The values in the order of $1, $2, …: named ones by first appearance, as psycopg does."""
    if params is None:
        return []
    if not isinstance(params, Mapping):
        return list(params)
    if isinstance(statement, sql.Composable):
        statement = statement.as_string(conn)
    text = statement.decode() if isinstance(statement, bytes) else statement
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", text)))
    return [params[n] for n in names]


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def seq_scans(plan: dict[str, Any]) -> list[str]:
    """The relations the plan reads from end to end."""
    return [n["Relation Name"] for n in nodes(plan) if n["Node Type"] == "Seq Scan"]


def _check(result: pq.abc.PGresult) -> None:
    if result.status not in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
        message = result.error_message.decode(errors="replace")
        sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"XX000").decode()
        raise psycopg.errors.lookup(sqlstate)(message)
