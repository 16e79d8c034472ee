"""GET /metrics: Prometheus text and the JSON summary, from the counters read model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from api.http.app import create_app
from api.runtime.settings import Settings
from tests.support.asgi import running
from tests.support.phones import random_phone


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    found = [
        s.value for s in samples(text) if s.name == name and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


async def settle(client: httpx.AsyncClient, database_url: str) -> dict[str, Any]:
    """Wait until the counters have folded every processed message, then read the summary."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while True:
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE type = 'SmsReceived'),"
                " count(*) FILTER (WHERE type = 'SmsProcessed') FROM events"
            )
            row = await cur.fetchone()
            assert row is not None
            summary = (await client.get("/metrics", headers={"Accept": "application/json"})).json()
            if row[0] == row[1] and summary["total_processed"] == row[1]:
                return dict(summary)
            assert time.monotonic() < deadline, (row, summary)
            await asyncio.sleep(0.02)


async def test_the_json_summary_counts_processed_messages(
    client: httpx.AsyncClient, database_url: str
) -> None:
    for i in range(3):
        body = {"from": random_phone(), "to": "+447911123456", "message": f"m{i}"}
        assert (await client.post("/messages", json=body)).status_code == 201
    response = await client.get("/metrics", headers={"Accept": "application/json"})
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == {"total_processed", "queue_size", "avg_processing_ms"}

    summary = await settle(client, database_url)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT 1000 * avg(extract(epoch FROM (p.data->>'processed_at')::timestamptz"
            " - (r.data->>'received_at')::timestamptz))::float8"
            " FROM events p JOIN events r ON r.stream_id = p.stream_id AND r.version = 1"
            " WHERE p.type = 'SmsProcessed'"
        )
        row = await cur.fetchone()
    assert row is not None
    assert summary["queue_size"] == 0
    assert summary["total_processed"] >= 3
    assert abs(summary["avg_processing_ms"] - row[0]) < 0.001


async def test_the_prometheus_text_has_every_family(
    client: httpx.AsyncClient, database_url: str
) -> None:
    sender = random_phone()
    body = {"from": sender, "to": "+447911123456", "message": "counted"}
    statuses = [(await client.post("/messages", json=body)).status_code for _ in range(2)]
    for i in range(5):
        await client.post("/messages", json={**body, "message": f"more {i}"})
    assert statuses == [201, 200]
    summary = await settle(client, database_url)

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    processed = value(text, "smsq_messages_processed_total")
    assert processed == summary["total_processed"]
    assert value(text, "smsq_queue_size") == 0
    assert value(text, "smsq_processing_seconds_count") == processed
    assert value(text, "smsq_processing_seconds_bucket", le="+Inf") == processed
    assert value(text, "smsq_messages_received_total") >= processed
    for projector in ("sms_messages", "processing", "message_counters"):
        assert value(text, "smsq_projection_lag_seconds", projector=projector) >= 0
        assert value(text, "smsq_projection_position", projector=projector) > 0
    assert value(text, "smsq_log_position") > 0
    assert value(text, "smsq_oldest_transaction_seconds") >= 0
    assert value(text, "smsq_duplicates_total") >= 1
    assert value(text, "smsq_rate_limited_total") >= 1
    created = value(
        text, "smsq_http_requests_total", method="POST", route="/messages", status="201"
    )
    assert created == 5  # the first, then four more before the limit
    latency = value(
        text,
        "smsq_http_request_duration_seconds_count",
        method="POST",
        route="/messages",
        status="201",
    )
    assert latency == created
    unmatched = await client.get("/no/such/path")
    assert unmatched.status_code == 404
    for method in ("BREW", "WHEN", "PROPFIND"):
        await client.request(method, "/messages")
    after = (await client.get("/metrics")).text
    assert value(after, "smsq_http_requests_total", route="unmatched", status="404") >= 1
    # Methods a client makes up share one label: the series cannot grow without bound.
    assert value(after, "smsq_http_requests_total", method="OTHER") == 3


async def test_every_api_process_reports_the_same_message_totals(
    client: httpx.AsyncClient, database_url: str
) -> None:
    await client.post(
        "/messages", json={"from": random_phone(), "to": "+447911123456", "message": "x"}
    )
    mine = await settle(client, database_url)
    # Another process of the service (a fresh app: nothing in memory) on the same database.
    async with running(create_app(Settings(database_url=database_url))) as other:
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as c:
            theirs = (await c.get("/metrics", headers={"Accept": "application/json"})).json()
    assert theirs == mine
