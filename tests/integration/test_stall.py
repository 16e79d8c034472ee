"""A projector that cannot fold an event stops there, loudly, and never skips it."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.http.app import create_app
from api.runtime.settings import Settings
from projections.log import Checkpoint, read_range
from projections.runner import ProjectionRunner, checkpoint_of
from tests.support.asgi import running
from tests.support.postgres import Databases
from tests.support.seed import seed_messages


class Picky:
    """Folds every event but those whose data says `poison`."""

    name = "picky"

    def __init__(self) -> None:
        self.folded: list[int] = []

    async def apply(
        self, conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint
    ) -> None:
        events = await read_range(conn, lo, hi)
        for event in events:
            if b"poison" in bytes(event.data):
                raise ValueError(f"cannot fold {event.type}")
        self.folded.extend(e.position for e in events)


def poison(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO events (stream_id, version, event_id, type, data)"
            " VALUES ('poisoned', 1, gen_random_uuid(), 'SmsReceived', '{\"poison\": true}')"
            " RETURNING position"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def until(check: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_a_stalled_projector_stops_at_the_event_says_so_once_and_shows_it(
    databases: Databases, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = databases.create()
    seed_messages(url, 20)
    bad = poison(url)
    seed_messages(url, 20, seed=3)
    with psycopg.connect(url) as conn:
        total = conn.execute("SELECT count(*) FROM events").fetchone()
    assert total is not None

    picky = Picky()
    runner = ProjectionRunner(url, [picky], poll_interval=0.02, stalled_retry=0.05)
    caplog.set_level(logging.INFO, logger="projections.runner")
    task = asyncio.create_task(runner.run())
    try:

        async def stalled() -> bool:
            async with await psycopg.AsyncConnection.connect(url) as conn:
                cur = await conn.execute(
                    "SELECT stalled_position FROM projection_checkpoints WHERE name = 'picky'"
                )
                row = await cur.fetchone()
            return row is not None and row[0] == bad

        await until(stalled)
        await asyncio.sleep(0.5)  # ten retries or so
    finally:
        runner.stop()
        await task

    # Everything before the bad event was folded, nothing after it, nothing twice.
    assert picky.folded == sorted(set(picky.folded))
    assert max(picky.folded) < bad
    assert len(picky.folded) == bad - 1
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert (await checkpoint_of(conn, "picky")).position == bad - 1

    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert errors[0].levelno == logging.ERROR
    assert "projector picky stopped" in errors[0].getMessage()
    assert f"position {bad}" in errors[0].getMessage()

    settings = Settings(database_url=url, run_projectors=False, data_dir=tmp_path / "data")
    async with running(create_app(settings)) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            body = ready.json()
            assert body["status"] == "degraded"
            [stall] = body["stalled"]
            assert (stall["projector"], stall["position"]) == ("picky", bad)
            # What failed is in the log (above), never in a public answer.
            assert set(stall) == {"projector", "position", "since"}
            metrics = (await client.get("/metrics")).text
            assert 'smsq_projection_stalled{projector="picky"} 1.0' in metrics

    # Fixed (here: the projector learns to fold it), it goes on and the stall clears.
    Picky.apply = _tolerant  # type: ignore[method-assign]
    runner = ProjectionRunner(url, [picky], poll_interval=0.02)
    task = asyncio.create_task(runner.run())
    try:

        async def caught_up() -> bool:
            async with await psycopg.AsyncConnection.connect(url) as conn:
                cur = await conn.execute(
                    "SELECT stalled_at IS NULL, position FROM projection_checkpoints"
                    " WHERE name = 'picky'"
                )
                row = await cur.fetchone()
            return row is not None and row[0] and row[1] >= bad

        await until(caught_up)
    finally:
        runner.stop()
        await task


async def _tolerant(
    self: Picky, conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint
) -> None:
    self.folded.extend(e.position for e in await read_range(conn, lo, hi))
