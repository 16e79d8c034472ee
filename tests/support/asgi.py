"""Run an app's lifespan in a task of its own.

pytest-asyncio may set a fixture up and tear it down in different tasks,
while Litestar's lifespan holds an anyio cancel scope that must be exited by
the task that entered it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from litestar import Litestar

# For the tests of a module that share one app (tests/conftest.py, module_client):
# they run on the event loop it runs on.
IN_MODULE_LOOP = pytest.mark.asyncio(loop_scope="module")


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[Litestar]:
    started, stop = asyncio.Event(), asyncio.Event()

    async def live() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(live())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # startup failed: raise its error here
    try:
        yield app
    finally:
        stop.set()
        await task
