"""POST /messages and GET /messages/{id} exactly as the HTTP contract says."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.support.asgi import IN_MODULE_LOOP
from tests.support.phones import random_phone

pytestmark = IN_MODULE_LOOP


@pytest.fixture(scope="module")
def client(module_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """One app for the module's tests (tests/conftest.py, module_client)."""
    return module_client


RECIPIENT = "+447911123456"
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def body(sender: str | None = None, text: str = "Hello") -> dict[str, str]:
    return {"from": sender or random_phone(), "to": RECIPIENT, "message": text}


async def test_a_new_message_is_created_and_readable_at_once(client: httpx.AsyncClient) -> None:
    sent = body()
    response = await client.post("/messages", json=sent)
    assert response.status_code == 201
    message = response.json()
    assert response.headers["location"] == f"/messages/{message['id']}"
    assert {k: message[k] for k in ("from", "to", "message")} == sent
    assert message["status"] == "received"
    assert message["media_count"] == 0
    assert RFC3339_MS.match(message["received_at"])
    assert response.headers["ratelimit-limit"] == "5"
    assert response.headers["ratelimit-remaining"] == "4"
    assert response.headers["ratelimit-reset"] == "60"

    read = await client.get(response.headers["location"])
    assert read.status_code == 200
    assert read.json()["id"] == message["id"]
    assert read.json()["message"] == "Hello"


async def test_a_repeat_within_two_seconds_answers_200_with_the_original(
    client: httpx.AsyncClient,
) -> None:
    sent = body()
    first = await client.post("/messages", json=sent)
    again = await client.post("/messages", json=sent)
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["ratelimit-remaining"] == "4"


async def test_the_sixth_message_in_a_minute_is_429_with_retry_headers(
    client: httpx.AsyncClient,
) -> None:
    sender = random_phone()
    codes = [
        (await client.post("/messages", json=body(sender, f"n{i}"))).status_code for i in range(5)
    ]
    assert codes == [201] * 5
    limited = await client.post("/messages", json=body(sender, "sixth"))
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-remaining"] == "0"
    assert limited.headers["ratelimit-reset"] == limited.headers["retry-after"]
    problem = limited.json()
    assert problem["status"] == 429
    assert {"type", "title", "detail"} <= problem.keys()
    # Another sender is not affected.
    assert (await client.post("/messages", json=body())).status_code == 201


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"from", "to", "message"}),
        ({"from": "+14155550100", "to": RECIPIENT}, {"message"}),
        ({"from": 14155550100, "to": RECIPIENT, "message": "x"}, {"from"}),
        ({"from": "+14155550100", "to": RECIPIENT, "message": "x", "extra": 1}, {"extra"}),
        ({"from": "+1234567890", "to": RECIPIENT, "message": "x"}, {"from"}),
        ({"from": "+14155550100", "to": "447911123456", "message": "x"}, {"to"}),
        ({"from": "+14155550100", "to": RECIPIENT, "message": ""}, {"message"}),
        ({"from": "+14155550100", "to": RECIPIENT, "message": "x" * 161}, {"message"}),
        ({"from": "+14155550100", "to": RECIPIENT, "message": "a\u0000b"}, {"message"}),
        ({"from": "bad", "to": "worse", "message": ""}, {"from", "to", "message"}),
        ([], {"body"}),
        ("just a string", {"body"}),
        (None, {"body"}),
    ],
)
async def test_invalid_bodies_are_422_problems_naming_each_bad_field(
    client: httpx.AsyncClient, payload: object, fields: set[str]
) -> None:
    response = await client.post(
        "/messages", content=json.dumps(payload), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert {e["field"] for e in problem["errors"]} == fields
    assert all(e["message"] for e in problem["errors"])


async def test_a_body_that_is_not_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/messages", content=b'{"from": "+1', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_declared_json_is_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/messages", content=b'{"from":"+14155550100"}', headers=headers)
    assert response.status_code == 415
    assert response.json()["status"] == 415


async def test_an_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/messages", content=b" " * 100_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_idempotency_key_replays_and_refuses_a_different_body(
    client: httpx.AsyncClient,
) -> None:
    sent, key = body(), {"Idempotency-Key": f"order-{random_phone()}"}
    first = await client.post("/messages", json=sent, headers=key)
    replay = await client.post("/messages", json=sent, headers=key)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json()
    assert replay.headers["location"] == first.headers["location"]
    other = await client.post("/messages", json={**sent, "message": "changed"}, headers=key)
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["detail"]


def ratelimit(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("ratelimit-")}


async def test_a_replay_repeats_the_first_answer_with_its_rate_limit_headers(
    client: httpx.AsyncClient,
) -> None:
    sender = random_phone()
    sent, key = body(sender), {"Idempotency-Key": f"retry-{random_phone()}"}
    first = await client.post("/messages", json=sent, headers=key)
    # The sender's quota moves on between the first answer and its replay.
    assert (await client.post("/messages", json=body(sender, "another"))).status_code == 201
    replay = await client.post("/messages", json=sent, headers=key)
    assert (replay.status_code, first.status_code) == (201, 201)
    assert replay.json() == first.json()
    assert ratelimit(replay) == ratelimit(first)
    assert ratelimit(first) == {
        "ratelimit-limit": "5",
        "ratelimit-remaining": "4",
        "ratelimit-reset": "60",
    }
    assert replay.headers["location"] == first.headers["location"]
    assert replay.headers["idempotent-replayed"] == "true"


async def test_a_replay_of_a_duplicate_is_the_same_200(client: httpx.AsyncClient) -> None:
    sender = random_phone()
    sent, key = body(sender), {"Idempotency-Key": f"retry-{random_phone()}"}
    original = await client.post("/messages", json=sent)
    first = await client.post("/messages", json=sent, headers=key)
    assert (await client.post("/messages", json=body(sender, "another"))).status_code == 201
    replay = await client.post("/messages", json=sent, headers=key)
    assert (replay.status_code, first.status_code) == (200, 200)
    assert replay.json()["id"] == first.json()["id"] == original.json()["id"]
    assert ratelimit(replay) == ratelimit(first)
    assert ratelimit(first)["ratelimit-remaining"] == "4"


@pytest.mark.parametrize("key", [b"", b"x" * 256, "caf\u00e9".encode(), b"tab\there"])
async def test_a_malformed_idempotency_key_is_422(client: httpx.AsyncClient, key: bytes) -> None:
    response = await client.post("/messages", json=body(), headers={"Idempotency-Key": key})
    assert response.status_code == 422


async def test_unknown_and_malformed_ids_are_404(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/messages/0193a2b4-0000-7000-8000-000000000000")
    assert unknown.status_code == 404
    assert unknown.json()["status"] == 404
    assert (await client.get("/messages/not-a-uuid")).status_code in (404, 422)


async def test_health_readiness_and_the_openapi_document(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/messages" in schema["paths"]
    assert "post" in schema["paths"]["/messages"]
    assert (await client.get("/schema")).status_code == 200
