"""Deduplication and the rate limit hold under real concurrency.

First inside one process (requests in flight together on one event loop, so
the group committer batches them), then spread over two `smsq serve`
processes sharing one database, where only the database's locks and clock
can keep them in agreement.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.phones import random_phone
from tests.support.servers import serving

RECIPIENT = "+447911123456"


async def burst(
    clients: list[httpx.AsyncClient], bodies: list[dict[str, str]]
) -> list[httpx.Response]:
    """Send every body at once, dealing them out over the clients in turn."""
    return await asyncio.gather(
        *(clients[i % len(clients)].post("/messages", json=b) for i, b in enumerate(bodies))
    )


def check_identical(responses: list[httpx.Response]) -> None:
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 19}
    assert len({r.json()["id"] for r in responses}) == 1


def check_different(responses: list[httpx.Response]) -> None:
    assert Counter(r.status_code for r in responses) == {201: 5, 429: 15}
    assert all(r.headers["ratelimit-limit"] == "5" for r in responses)


async def count_stored(client: httpx.AsyncClient, sender: str, ids: set[str]) -> int:
    found = [await client.get(f"/messages/{i}") for i in ids]
    return sum(1 for r in found if r.status_code == 200 and r.json()["from"] == sender)


async def test_twenty_identical_posts_at_once_store_one(client: httpx.AsyncClient) -> None:
    sender = random_phone()
    responses = await burst([client], [{"from": sender, "to": RECIPIENT, "message": "same"}] * 20)
    check_identical(responses)


async def test_twenty_different_posts_at_once_store_five(client: httpx.AsyncClient) -> None:
    sender = random_phone()
    bodies = [{"from": sender, "to": RECIPIENT, "message": f"n{i}"} for i in range(20)]
    responses = await burst([client], bodies)
    check_different(responses)
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    assert await count_stored(client, sender, created) == 5


@pytest.fixture(scope="module")
def two_servers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    logs = tmp_path_factory.mktemp("servers")
    env = {"SMSQ_DATABASE_URL": database_url, "SMSQ_LOG_LEVEL": "WARNING"}
    with serving(env, Path(logs / "a.log")) as a, serving(env, Path(logs / "b.log")) as b:
        yield [a, b]


async def test_identical_posts_over_two_processes_store_one(two_servers: list[str]) -> None:
    sender = random_phone()
    async with (
        httpx.AsyncClient(base_url=two_servers[0]) as a,
        httpx.AsyncClient(base_url=two_servers[1]) as b,
    ):
        responses = await burst([a, b], [{"from": sender, "to": RECIPIENT, "message": "same"}] * 20)
    check_identical(responses)


async def test_different_posts_over_two_processes_store_five(two_servers: list[str]) -> None:
    sender = random_phone()
    bodies = [{"from": sender, "to": RECIPIENT, "message": f"n{i}"} for i in range(20)]
    async with (
        httpx.AsyncClient(base_url=two_servers[0]) as a,
        httpx.AsyncClient(base_url=two_servers[1]) as b,
    ):
        responses = await burst([a, b], bodies)
        check_different(responses)
        created = {r.json()["id"] for r in responses if r.status_code == 201}
        # Each process sees what the other stored.
        assert await count_stored(b, sender, created) == 5
        assert await count_stored(a, sender, created) == 5
