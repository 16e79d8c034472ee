"""SIGKILL the server in the middle of ingest: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import httpx

from tests.support.consistency import assert_folded_once
from tests.support.phones import random_phone
from tests.support.postgres import Databases
from tests.support.servers import crash, free_port, local_async_client, smsq_process, wait_ready

SENT = itertools.count()


async def ingest(url: str, created: list[str], stop: asyncio.Event) -> None:
    async with local_async_client(url, timeout=5) as client:
        while not stop.is_set():
            # A text of its own: one number drawn twice within 2 s with one text
            # would be a duplicate by contract, answered 200.
            text = f"mid-crash {next(SENT)}"
            body = {"from": random_phone(), "to": "+447911123456", "message": text}
            try:
                response = await client.post("/messages", json=body)
            except httpx.HTTPError:
                return  # the server died under this request: it was never acknowledged
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])


async def test_every_acknowledged_message_survives_a_server_kill(
    databases: Databases, tmp_path: Path
) -> None:
    db = databases.create()
    port = free_port()
    env = {"SMSQ_DATABASE_URL": db, "SMSQ_PORT": str(port), "SMSQ_LOG_LEVEL": "WARNING"}
    url = f"http://127.0.0.1:{port}"
    created: list[str] = []

    with smsq_process(["serve"], env, tmp_path / "first.log") as server:
        wait_ready(url, server, tmp_path / "first.log", 60)
        stop = asyncio.Event()
        writers = [asyncio.create_task(ingest(url, created, stop)) for _ in range(12)]
        # A hundred acknowledged: every writer has had several answered, so
        # ingest is in full swing, a dozen requests in flight, when the kill comes.
        deadline = time.monotonic() + 30
        while len(created) < 100:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        crash(server)
        stop.set()
        await asyncio.gather(*writers)

    with smsq_process(["serve"], env, tmp_path / "second.log") as server:
        wait_ready(url, server, tmp_path / "second.log", 60)
        # In the read model itself (GET would fall back to the stream), once each.
        await assert_folded_once(db, created, within=60)
    print(f"server SIGKILLed after {len(created)} acknowledged messages: none lost")
