"""Background work a process runs beside (or instead of) the API."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg_pool import AsyncConnectionPool

from commands.housekeeping import keep_pruning
from projections.catalog import projectors
from projections.listener import Listener
from projections.runner import ProjectionRunner

log = logging.getLogger(__name__)


@asynccontextmanager
async def background(
    url: str, pool: AsyncConnectionPool[Any], listener: Listener
) -> AsyncIterator[ProjectionRunner]:
    """Projectors, the processing stage and housekeeping, stopped gracefully on exit.

    They wake on `listener`, which the caller runs once every follower has subscribed.
    """
    runner = ProjectionRunner(url, projectors(), listener=listener)
    running = asyncio.create_task(runner.run())
    stopping = asyncio.Event()
    pruning = asyncio.create_task(keep_pruning(pool, stopping))
    try:
        yield runner
    finally:
        # Each projector finishes (and checkpoints) the batch in flight, then returns.
        stopping.set()
        runner.stop()
        try:
            await asyncio.wait_for(asyncio.gather(running, pruning), 10)
        except TimeoutError:
            log.warning("projectors did not stop within 10 s")
