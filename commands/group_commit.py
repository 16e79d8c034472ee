"""Group commit: concurrent requests share one transaction and one commit.

Requests queue up while earlier batches are in flight; each free runner takes
everything queued (up to `max_batch`) and hands it to the batch handler. Under
light load every request is its own batch and waits for nothing; under heavy
load batches grow and commits per request fall.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from commands.event_store import ConcurrencyConflict

Req = TypeVar("Req")
Res = TypeVar("Res")

BatchHandler = Callable[[psycopg.AsyncConnection[Any], Sequence[Req]], Awaitable[list[Res]]]

log = logging.getLogger(__name__)

# Races that a fresh decision resolves: another batch took the same idempotency
# key or stream version first, or the server chose this transaction as a victim.
RETRYABLE = (
    ConcurrencyConflict,
    errors.UniqueViolation,
    errors.DeadlockDetected,
    errors.SerializationFailure,
)


class Unavailable(Exception):
    """The database could not be reached or did not answer in time."""


class GroupCommitter(Generic[Req, Res]):
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        handler: BatchHandler[Req, Res],
        *,
        max_batch: int = 64,
        concurrency: int = 4,
        attempts: int = 5,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._pool = pool
        self._handler = handler
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._attempts = attempts
        self._on_commit = on_commit
        self._queue: deque[tuple[Req, asyncio.Future[Res]]] = deque()
        self._runners: set[asyncio.Task[None]] = set()

    async def submit(self, request: Req) -> Res:
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if len(self._runners) < self._concurrency:
            task = asyncio.create_task(self._run())
            self._runners.add(task)
            task.add_done_callback(self._runners.discard)
        return await future

    async def drain(self) -> None:
        """Wait until every submitted request has its answer (for a graceful stop)."""
        while self._runners:
            await asyncio.gather(*self._runners, return_exceptions=True)

    async def _run(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            await self._settle(batch)

    async def _settle(self, batch: list[tuple[Req, asyncio.Future[Res]]]) -> None:
        requests = [r for r, _ in batch]
        try:
            results = await self._with_retries(requests)
        except Exception as error:
            if len(batch) > 1 and not isinstance(error, Unavailable):
                # One bad request must not fail its neighbours: settle each alone.
                log.warning("batch of %d failed (%r); retrying one by one", len(batch), error)
                for item in batch:
                    await self._settle([item])
                return
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        if self._on_commit is not None:
            self._on_commit()
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _with_retries(self, requests: list[Req]) -> list[Res]:
        attempt = 1
        while True:
            try:
                async with self._pool.connection() as conn:
                    return await self._handler(conn, requests)
            except RETRYABLE as error:
                if attempt >= self._attempts:
                    raise
                attempt += 1
                log.debug("batch retry %d after %r", attempt, error)
            except (PoolTimeout, psycopg.OperationalError) as error:
                raise Unavailable(str(error)) from error
