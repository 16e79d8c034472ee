"""Background work a process runs beside (or instead of) the API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commands.housekeeping import keep_pruning
from projections.catalog import projectors
from projections.listener import Listener
from projections.runner import ProjectionRunner, Projector

log = logging.getLogger(__name__)

SEAL_EVERY = 1000
SEAL_PAUSE = 1.0


@asynccontextmanager
async def background(
    url: str,
    pool: AsyncConnectionPool[Any],
    listener: Listener,
    sealer: Projector | None = None,
) -> AsyncIterator[ProjectionRunner]:
    """Projectors, the processing stage, the sealer and housekeeping, stopped
    gracefully on exit.

    They wake on `listener`, which the caller runs once every follower has subscribed.
    """
    runner = ProjectionRunner(url, projectors(), listener=listener)
    runners = [runner]
    if sealer is not None:
        # A seal per batch of up to 1,000 events, and after a smaller batch a
        # pause of a second: at most about one seal a second under a trickle,
        # each soon after its events, and none when nothing is new.
        runners.append(
            ProjectionRunner(
                url, [sealer], listener=listener, batch_size=SEAL_EVERY, linger=SEAL_PAUSE
            )
        )
    running = [asyncio.create_task(r.run()) for r in runners]
    stopping = asyncio.Event()
    pruning = asyncio.create_task(keep_pruning(pool, stopping))
    try:
        yield runner
    finally:
        # Each projector finishes (and checkpoints) the batch in flight, then returns.
        stopping.set()
        for r in runners:
            r.stop()
        try:
            await asyncio.wait_for(asyncio.gather(*running, pruning), 10)
        except TimeoutError:
            log.warning("projectors did not stop within 10 s")


@asynccontextmanager
async def running_task(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run `work` as a task for the duration; it is cancelled on exit."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
