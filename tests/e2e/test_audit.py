"""GET /messages/{id}/events and GET /events as the contract says."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest

from tests.support.asgi import IN_MODULE_LOOP
from tests.support.phones import random_phone

pytestmark = IN_MODULE_LOOP


@pytest.fixture(scope="module")
def client(module_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """One app for the module's tests (tests/conftest.py, module_client)."""
    return module_client


RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def processed_message(client: httpx.AsyncClient) -> dict[str, Any]:
    sent = {"from": random_phone(), "to": "+447911123456", "message": "for the record"}
    created = await client.post("/messages", json=sent)
    assert created.status_code == 201
    path = f"/messages/{created.json()['id']}"
    deadline = time.monotonic() + 10
    while (await client.get(path)).json()["status"] != "processed":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    return dict(created.json())


async def test_a_messages_stream_oldest_first(client: httpx.AsyncClient) -> None:
    message = await processed_message(client)
    response = await client.get(f"/messages/{message['id']}/events")
    assert response.status_code == 200
    received, processed = response.json()["items"]
    stream = f"sms-{message['id']}"
    assert (received["stream_id"], received["version"], received["type"]) == (
        stream,
        1,
        "SmsReceived",
    )
    assert (processed["stream_id"], processed["version"], processed["type"]) == (
        stream,
        2,
        "SmsProcessed",
    )
    assert received["data"]["message"] == "for the record"
    assert received["data"]["from"] == message["from"]
    assert processed["data"]["segments"] == 1
    assert received["position"] < processed["position"]
    assert RFC3339_MS.match(received["recorded_at"])
    metadata = received["metadata"]
    assert metadata["actor"] == "anonymous"
    assert metadata["request_id"]
    assert {"correlation_id", "causation_id"} <= metadata.keys()


async def test_an_unknown_message_has_no_events(client: httpx.AsyncClient) -> None:
    response = await client.get("/messages/0193a2b4-0000-7000-8000-000000000000/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_walking_the_log_by_next_after_sees_each_event_once(
    client: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        await processed_message(client)
    walked: list[dict[str, Any]] = []
    after = 0
    while True:
        page = (await client.get("/events", params={"after": after, "limit": 4})).json()
        walked += page["items"]
        if not page["items"]:
            assert page["next_after"] == after
            break
        assert page["next_after"] == page["items"][-1]["position"]
        after = page["next_after"]
    positions = [e["position"] for e in walked]
    assert len(positions) == len(set(positions)) >= 6
    everything = (await client.get("/events", params={"limit": 1000})).json()["items"]
    assert [e["position"] for e in everything] == positions


async def test_the_type_filter_and_the_default_page(client: httpx.AsyncClient) -> None:
    await processed_message(client)
    processed = (await client.get("/events", params={"type": "SmsProcessed"})).json()
    assert processed["items"]
    assert {e["type"] for e in processed["items"]} == {"SmsProcessed"}
    assert len((await client.get("/events")).json()["items"]) <= 100


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("after=-1", "after"),
        ("after=x", "after"),
        (f"after={2**63}", "after"),
        ("type=SmsDeleted", "type"),
        ("typ=SmsProcessed", "typ"),
        ("after=0&offset=10", "offset"),
    ],
)
async def test_bad_query_parameters_are_422(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(f"/events?{query}")
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_an_unknown_parameter_is_422_not_the_whole_log(client: httpx.AsyncClient) -> None:
    response = await client.get("/events", params={"types": "SmsProcessed", "limit": 1})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == "types"
    assert "type" in error["message"]
