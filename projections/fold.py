"""One shape for every set-based read model: a fold of a range of the log by
one SQL statement, the same for the live projector (a batch at a time) and
for replay (large chunks into shadow tables), so both build the same tables by
construction.

A statement reads the log through `current_events`, where every event's data
is in its type's current version (see `domain.upcasting`), never from
`events` itself, and its placeholders are filled here:

- `{events}`: that view;
- `{in_range}`: the range's condition, on `tx_id` and `position`;
- each of its tables by its own name (`{sms_messages}`): the live table, or
  the shadow replay builds;
- each event type by the role the fold gives it (`{received}`): the type's
  name, taken from the event class.

A statement names the view's `data` once for each read of the view (a
subquery with `OFFSET 0` around the read, the rest of the statement naming
its column): PostgreSQL inlines the upcasting expression wherever `data` is
named, and plans every copy on every batch (0.1-0.3 ms each) and computes it
for every event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql

from domain.events import Event
from projections.log import IN_RANGE, Checkpoint, range_params

EVENTS = "current_events"


class SqlFold:
    """A named read model kept by one statement over each range of the log.

    `reads` says what each JSON value the statement reads keys of
    (`r->>'from'`: `r`) holds, as the event types it can be; a contract test
    checks every key read against those types' current encoding.
    """

    def __init__(
        self,
        name: str,
        statement: str,
        *,
        tables: Sequence[str],
        types: Mapping[str, type[Event]],
        reads: Mapping[str, Sequence[type[Event]]],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.tables = tuple(tables)
        self.types = dict(types)
        self.reads = {value: tuple(kinds) for value, kinds in reads.items()}
        self.template = statement
        self.params = dict(params or {})

    def __repr__(self) -> str:
        return f"SqlFold({self.name!r})"

    def statement(self, tables: Mapping[str, str]) -> sql.Composed:
        """The statement folding into `tables` (live name to the name to write)."""
        return sql.SQL(self.template).format(
            events=sql.Identifier(EVENTS),
            in_range=sql.SQL(IN_RANGE),
            **{table: sql.Identifier(tables[table]) for table in self.tables},
            **{role: sql.Literal(event.TYPE) for role, event in self.types.items()},
        )

    async def apply(
        self, conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint
    ) -> None:
        await self.rebuild(conn, {table: table for table in self.tables}, lo, hi)

    async def rebuild(
        self,
        conn: psycopg.AsyncConnection[Any],
        tables: Mapping[str, str],
        lo: Checkpoint,
        hi: Checkpoint,
    ) -> None:
        await conn.execute(self.statement(tables), {**range_params(lo, hi), **self.params})
