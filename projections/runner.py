"""The subscription loop: feeds each projector the log, batch by batch.

One transaction per batch holds the projector's checkpoint row, reads the
next committed range, lets the projector fold it, and moves the checkpoint:
all or nothing, so every event is folded exactly once even across crashes.
Projectors wake on NOTIFY and also poll, so a lost notification costs
latency, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
from psycopg import errors, sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from commands.notify import CHANNEL
from projections.listener import Listener, listening
from projections.log import START, Checkpoint, range_end
from projections.progress import PROGRESS, announcement

log = logging.getLogger(__name__)


class Projector(Protocol):
    """A named fold of the log; `apply` runs inside the batch's transaction and
    says whether it appended events to the log (a reactor's batch may)."""

    @property
    def name(self) -> str: ...

    async def apply(
        self, conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint
    ) -> bool | None: ...


async def ensure_checkpoints(conn: psycopg.AsyncConnection[Any], names: Sequence[str]) -> None:
    # Only the names with no row yet: an insert that meets a row another
    # instance's open batch is updating waits for that batch to end, so a
    # standby starting up would queue behind the active instance.
    await conn.execute(
        "INSERT INTO projection_checkpoints (name) SELECT n FROM unnest(%s::text[]) AS n"
        " WHERE NOT EXISTS (SELECT 1 FROM projection_checkpoints c WHERE c.name = n)"
        " ON CONFLICT DO NOTHING",
        (list(names),),
    )


# The lease and the range it may fold, in one statement: one round trip, and
# one snapshot for the horizon test and the read (see projections.log). No row
# back means another instance holds the lease.
#
# Planned on each run, never prepared: the range's start comes from the
# checkpoint row, so no plan knows how many events lie past it, and the choice
# rests on the log's size when the plan is made. A plan PostgreSQL kept from
# a new deployment's small log scanned everything past the checkpoint and
# sorted it before cutting the batch: 13 ms a lease behind a backlog of
# 20,000 events, until autovacuum next analysed the log. Planned afresh (0.25-
# 0.4 ms), a lease reads the batch by the index, in order, and stops.
_LEASE = f"""
SELECT lease.tx_id::text, lease.position, ahead.tx_id::text, ahead.position, ahead.n
FROM (
    SELECT tx_id, position FROM projection_checkpoints
    WHERE name = %(name)s FOR UPDATE SKIP LOCKED
) AS lease
LEFT JOIN LATERAL ({range_end("lease.tx_id, lease.position")}) AS ahead ON true
"""

_MOVE = """
UPDATE projection_checkpoints SET tx_id = %(tx)s::text::xid8, position = %(position)s,
    updated_at = clock_timestamp(),
    stalled_position = NULL, stalled_error = NULL, stalled_at = NULL
WHERE name = %(name)s
"""

# Sent after the batch commits, as a transaction of its own: NOTIFY takes a
# cluster-wide lock at commit, held through the commit's WAL flush, so an
# announcement inside the batch would line every projector's commit and every
# writer's up behind one another. Heard only once the batch is visible; a
# batch that appended events also tells the log's followers that it grew.
_ANNOUNCE = sql.SQL("SELECT pg_notify({progress}, %s)").format(progress=sql.Literal(PROGRESS))
_ANNOUNCE_GROWN = sql.SQL("SELECT pg_notify({progress}, %s), pg_notify({grown}, '')").format(
    progress=sql.Literal(PROGRESS), grown=sql.Literal(CHANNEL)
)


async def move_checkpoint(conn: psycopg.AsyncConnection[Any], name: str, to: Checkpoint) -> None:
    await conn.execute(_MOVE, {"tx": to.tx_id, "position": to.position, "name": name})


async def announce(
    conn: psycopg.AsyncConnection[Any], name: str, at: Checkpoint, *, appended: bool = False
) -> None:
    """Once the move to `at` has committed (`conn` outside any transaction)."""
    await conn.execute(_ANNOUNCE_GROWN if appended else _ANNOUNCE, (announcement(name, at),))


async def step(
    conn: psycopg.AsyncConnection[Any], projector: Projector, batch_size: int
) -> int | None:
    """Fold one batch; returns how many events, or None if another instance holds the lease.

    `conn` is in autocommit mode: the batch is a transaction of its own, and
    its announcement another. Pipelined: the same few round trips whatever the
    projector writes (the lease's, the fold's, the commit's, and the pipeline's
    closing one, which the announcement rides on).
    """
    committed = False
    try:
        async with conn.pipeline():
            async with conn.transaction():
                cur = await conn.execute(
                    _LEASE, {"name": projector.name, "limit": batch_size}, prepare=False
                )
                row = await cur.fetchone()
                if row is None:
                    return None
                if row[2] is None:
                    return 0
                lo, hi = Checkpoint(int(row[0]), row[1]), Checkpoint(int(row[2]), row[3])
                count = int(row[4])
                appended = await projector.apply(conn, lo, hi)
                await move_checkpoint(conn, projector.name, hi)
            committed = True
            await announce(conn, projector.name, hi, appended=bool(appended))
    except psycopg.Error as error:
        if not committed:
            raise
        # Only the announcement can fail past the commit. Waiters then wait for
        # the next one or their deadline; this must not pass for a batch that
        # failed to fold.
        log.warning("projector %s: folded to %s, not announced: %r", projector.name, hi, error)
    return count


# Failures that say nothing about the events: the database went away, a
# transaction lost a race. The batch is tried again as it was.
TRANSIENT = (
    errors.OperationalError,
    errors.TransactionRollback,
    errors.AdminShutdown,
    PoolTimeout,
    OSError,
    TimeoutError,
)

# How long a projector waits for a connection before it looks again whether
# it is stopping. While the database is away the pool reconnects (and logs
# each failure); a stop must not wait out the pool's 30 s.
CONNECTION_WAIT = 1.0

_NEXT_EVENT = """
SELECT e.position FROM events AS e, projection_checkpoints AS c
WHERE c.name = %(name)s AND (e.tx_id, e.position) > (c.tx_id, c.position)
ORDER BY e.tx_id, e.position LIMIT 1
"""

_STALL = """
UPDATE projection_checkpoints
SET stalled_position = %(position)s, stalled_error = %(error)s,
    stalled_at = coalesce(stalled_at, clock_timestamp())
WHERE name = %(name)s
"""


async def find_stall(conn: psycopg.AsyncConnection[Any], projector: Projector) -> int | None:
    """After a batch failed: fold one event at a time up to the one that fails,
    record it as where the projector is stalled, and return its position
    (None when every event folded this time, or another instance holds the lease)."""
    while True:
        try:
            count = await step(conn, projector, 1)
        except TRANSIENT:
            raise
        except Exception as error:
            cur = await conn.execute(_NEXT_EVENT, {"name": projector.name})
            row = await cur.fetchone()
            position = None if row is None else int(row[0])
            await conn.execute(
                _STALL, {"name": projector.name, "position": position, "error": repr(error)}
            )
            return position
        if not count:
            return None


async def catch_up(
    conn: psycopg.AsyncConnection[Any], projector: Projector, batch_size: int = 1000
) -> int:
    """Fold everything committed so far; returns how many events that was."""
    await ensure_checkpoints(conn, [projector.name])
    total = 0
    while n := await step(conn, projector, batch_size):
        total += n
    return total


async def checkpoint_of(conn: psycopg.AsyncConnection[Any], name: str) -> Checkpoint:
    cur = await conn.execute(
        "SELECT tx_id::text, position FROM projection_checkpoints WHERE name = %s", (name,)
    )
    row = await cur.fetchone()
    return START if row is None else Checkpoint(int(row[0]), row[1])


class ProjectionRunner:
    """Runs projectors until stopped: one task each, woken by the process's listener
    (or, when none is given, by a listener of the runner's own)."""

    def __init__(
        self,
        url: str,
        projectors: Sequence[Projector],
        *,
        listener: Listener | None = None,
        batch_size: int = 1000,
        poll_interval: float = 0.5,
        linger: float = 0.025,
        stalled_retry: float = 5.0,
    ) -> None:
        self._url = url
        self._own_listener = listener is None
        self._listener = Listener(url) if listener is None else listener
        self._listener.subscribe(CHANNEL, lambda _: self.poke())
        # Whatever was committed while the listener was away is found by a look.
        self._listener.on_connect(self.poke)
        self._projectors = list(projectors)
        self._batch_size = batch_size
        self._poll = poll_interval
        self._linger = linger
        self._stalled_retry = stalled_retry
        self._wake = {p.name: asyncio.Event() for p in self._projectors}
        self._stopping = asyncio.Event()

    def poke(self) -> None:
        for event in self._wake.values():
            event.set()

    def stop(self) -> None:
        """Finish the batches in flight, then return from `run`."""
        self._stopping.set()
        self.poke()

    async def run(self) -> None:
        pool = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=len(self._projectors),
            kwargs={"autocommit": True, "fallback_application_name": "smsq-projections"},
            name="projections",
            open=False,
        )
        own = listening(self._listener) if self._own_listener else contextlib.nullcontext()
        async with pool, own, asyncio.TaskGroup() as tasks:
            for projector in self._projectors:
                tasks.create_task(self._follow(pool, projector))

    async def _follow(self, pool: AsyncConnectionPool[Any], projector: Projector) -> None:
        wake = self._wake[projector.name]
        ensured = False
        stalled: int | None = None
        while not self._stopping.is_set():
            wake.clear()
            try:
                async with pool.connection(timeout=CONNECTION_WAIT) as conn:
                    if not ensured:
                        await ensure_checkpoints(conn, [projector.name])
                        ensured = True
                    try:
                        count = await step(conn, projector, self._batch_size)
                    except TRANSIENT:
                        raise
                    except Exception as error:
                        # Never skipped: everything before the event that fails
                        # is folded, then the projector stays there, said once.
                        at = await find_stall(conn, projector)
                        if at is not None and at != stalled:
                            log.error(
                                "projector %s stopped: it cannot fold the event at position"
                                " %s (%r); it retries every %s s without further notice",
                                projector.name,
                                at,
                                error,
                                self._stalled_retry,
                            )
                        stalled = at
                        if at is not None:
                            await self._sleep(self._stopping, self._stalled_retry)
                        continue
            except PoolTimeout:
                continue  # no connection yet: the pool says why and keeps trying
            except Exception as error:  # a projector must outlive any one bad batch
                log.warning("projector %s: %r; retrying", projector.name, error)
                await self._sleep(wake, 1.0)
                continue
            if stalled is not None and count is not None:
                log.info("projector %s folds again past position %s", projector.name, stalled)
                stalled = None
            if count:
                # There may be more right behind this batch. A short pause first
                # lets a steady trickle be folded a batch per transaction instead
                # of one transaction (and one WAL flush) per event.
                if count < self._batch_size:
                    await self._sleep(self._stopping, self._linger)
                continue
            await self._sleep(wake, self._poll)

    async def _sleep(self, wake: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
