"""GET /messages and the lifecycle, served from the read model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from projections.messages import MessagesProjector
from projections.processing import ProcessingStage
from projections.runner import Projector, catch_up
from tests.support.asgi import IN_MODULE_LOOP
from tests.support.phones import random_phone


@pytest.fixture(scope="module")
def client(module_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """One app for the module's tests (tests/conftest.py, module_client)."""
    return module_client


async def post(client: httpx.AsyncClient, sender: str, recipient: str, text: str) -> dict[str, Any]:
    response = await client.post(
        "/messages", json={"from": sender, "to": recipient, "message": text}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def until(client: httpx.AsyncClient, path: str, ready: Any, within: float = 10) -> Any:
    """Poll `path` until `ready(body)` holds; the projectors run in the background."""
    deadline = time.monotonic() + within
    while True:
        body = (await client.get(path)).json()
        if ready(body):
            return body
        assert time.monotonic() < deadline, f"{path} never became ready: {body}"
        await asyncio.sleep(0.01)


async def test_a_message_goes_received_stored_processed(
    still: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    # The projectors are moved by the test, so each stage is seen for sure (how
    # fast a message moves through them is a benchmark's question: bench.lifecycle).
    created = await post(still, random_phone(), "+447911123456", "Grüße 👋")
    assert created["status"] == "received"
    path = f"/messages/{created['id']}"
    assert (await still.get(path)).json() == created

    async def fold(projector: Projector) -> None:
        async with pool.connection() as conn:
            assert await catch_up(conn, projector) > 0

    await fold(MessagesProjector())
    assert (await still.get(path)).json() == created | {"status": "stored"}

    await fold(ProcessingStage())
    # The row still says "stored": the stream answers, processed, with what processing found.
    processed = (await still.get(path)).json()
    assert processed["status"] == "processed"
    assert (processed["encoding"], processed["segments"]) == ("UCS-2", 1)
    assert processed["processed_at"] >= processed["received_at"]

    await fold(MessagesProjector())
    assert (await still.get(path)).json() == processed


@IN_MODULE_LOOP
async def test_filters_pages_and_the_next_link_walk_every_message_once(
    client: httpx.AsyncClient,
) -> None:
    recipient = random_phone()
    senders = [random_phone() for _ in range(5)]
    created = [await post(client, s, recipient, f"hello {i}") for s in senders for i in range(5)]
    await post(client, random_phone(), random_phone(), "to someone else")
    path = f"/messages?to={recipient.replace('+', '%2B')}&limit=7"
    await until(client, path.replace("limit=7", "limit=100"), lambda b: len(b["items"]) == 25)

    walked: list[dict[str, Any]] = []
    pages = 0
    next_path: str | None = path
    while next_path:
        page = (await client.get(next_path)).json()
        walked += page["items"]
        next_path = page["next"]
        pages += 1
    assert pages == 4
    escaped = recipient.replace("+", "%2B")
    first = (await client.get(path)).json()
    assert first["next"] == f"/messages?to={escaped}&limit=7&offset=7"
    assert sorted(m["id"] for m in walked) == sorted(m["id"] for m in created)
    order = [(m["received_at"], m["id"]) for m in walked]
    assert order == sorted(order, reverse=True)


@IN_MODULE_LOOP
async def test_from_status_and_defaults(client: httpx.AsyncClient) -> None:
    sender = random_phone()
    mine = [await post(client, sender, random_phone(), f"m{i}") for i in range(3)]
    # An unescaped "+" arrives as a space; it still means "+".
    raw = f"/messages?from= {sender[1:]}"
    body = await until(client, raw, lambda b: len(b["items"]) == 3)
    assert {m["id"] for m in body["items"]} == {m["id"] for m in mine}
    assert (body["limit"], body["offset"], body["next"]) == (10, 0, None)

    processed = await until(
        client,
        f"/messages?from=%2B{sender[1:]}&status=processed",
        lambda b: len(b["items"]) == 3,
    )
    assert all(m["status"] == "processed" for m in processed["items"])
    others = [
        await post(client, s, random_phone(), "x")
        for s in (random_phone(), random_phone())
        for _ in range(4)
    ]
    await until(client, f"/messages/{others[-1]['id']}", lambda b: b["status"] != "received")
    default = (await client.get("/messages")).json()
    assert len(default["items"]) == 10
    assert default["next"] == "/messages?limit=10&offset=10"


@IN_MODULE_LOOP
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("status=lost", "status"),
        ("from=%2B1234567890", "from"),
        ("to=447911123456", "to"),
        ("stauts=stored", "stauts"),
        ("status=stored&limit=5&Limit=5", "Limit"),
        ("after=3", "after"),
    ],
)
async def test_bad_query_parameters_are_422(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"/messages?{query}")
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


@IN_MODULE_LOOP
async def test_an_unknown_parameter_is_422_not_an_unfiltered_page(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/messages", params={"stauts": "processed", "limit": 5})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["type"]) == (422, "/problems/validation")
    [error] = problem["errors"]
    assert error["field"] == "stauts"
    assert "status" in error["message"]


@IN_MODULE_LOOP
async def test_many_unknown_parameters_get_a_short_422(client: httpx.AsyncClient) -> None:
    query = "&".join(f"p{i}=1" for i in range(2000))
    response = await client.get(f"/messages?{query}&p0=again")
    assert response.status_code == 422
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == ["p0", "p1", "p2", "p3", "p4"]
    assert problem["detail"].endswith("and 1995 more")


@IN_MODULE_LOOP
async def test_get_by_id_reads_the_model_once_it_has_the_message(client: httpx.AsyncClient) -> None:
    created = await post(client, random_phone(), random_phone(), "hi")
    body = await until(client, f"/messages/{created['id']}", lambda b: b["status"] == "processed")
    assert {k: body[k] for k in ("id", "from", "to", "message", "received_at")} == {
        k: created[k] for k in ("id", "from", "to", "message", "received_at")
    }


@IN_MODULE_LOOP
async def test_an_offset_past_everything_is_an_empty_page(client: httpx.AsyncClient) -> None:
    last = await client.get(f"/messages?offset={2**63 - 1}")
    assert last.status_code == 200
    assert last.json()["items"] == []
    assert last.json()["next"] is None
    assert (await client.get(f"/messages?offset={2**63}")).status_code == 422
