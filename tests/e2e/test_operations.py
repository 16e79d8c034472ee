"""`smsq serve`, `smsq keys` and `smsq events` as an operator and an auditor use them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from uuid_utils.compat import uuid4

from api.http.app import create_app
from api.runtime.settings import Settings
from migrations import available, migrate
from tests.support.asgi import running
from tests.support.phones import random_phone
from tests.support.postgres import Databases
from tests.support.servers import (
    SMSQ,
    free_port,
    local_client,
    serving,
    smsq_process,
    wait_ready,
)


def smsq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SMSQ, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def healthz_count(metrics: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "smsq_http_requests_total" and s.labels["route"] == "/healthz"
    )


def until(check: Any, within: float = 15) -> Any:
    deadline = time.monotonic() + within
    while not (found := check()):
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)
    return found


@pytest.fixture
def db(databases: Databases) -> str:
    return databases.create()


def test_two_workers_answer_one_total_and_log_each_request_as_json(db: str, tmp_path: Path) -> None:
    env = {"SMSQ_DATABASE_URL": db, "SMSQ_WORKERS": "2", "SMSQ_LOG_LEVEL": "INFO"}
    log = tmp_path / "serve.log"
    with serving(env, log) as url, local_client(url) as client:
        for _ in range(30):
            assert client.get("/healthz").status_code == 200
        # Whichever worker answers the scrape, it reports both workers' requests:
        # each scrape on a new connection, so that both workers are asked.
        with local_client(url, limits=httpx.Limits(max_keepalive_connections=0)) as scraper:
            scraped = {healthz_count(scraper.get("/metrics").text) for _ in range(8)}
        sent = client.post(
            "/messages",
            json={"from": random_phone(), "to": "+447911123456", "message": "logged"},
            headers={"X-Request-ID": "ops-test-1"},
        )
        assert sent.status_code == 201
    assert scraped == {30}
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "ops-test-1"]
    assert len(mine) == 1
    entry = mine[0]
    assert {k: entry[k] for k in ("method", "route", "status", "actor")} == {
        "method": "POST",
        "route": "/messages",
        "status": 201,
        "actor": "anonymous",
    }
    assert entry["duration_ms"] > 0
    assert entry["level"] == "INFO"
    assert entry["time"].endswith("Z")


def test_an_in_flight_request_is_answered_during_a_graceful_stop(db: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"SMSQ_DATABASE_URL": db, "SMSQ_PORT": str(port), "SMSQ_LOG_LEVEL": "WARNING"}
    body = json.dumps({"from": random_phone(), "to": "+447911123456", "message": "stopping"})
    log = tmp_path / "serve.log"
    with smsq_process(["serve"], env, log) as server:
        wait_ready(f"http://127.0.0.1:{port}", server, log, 60)
        with socket.create_connection(("127.0.0.1", port)) as conn:
            head = (
                "POST /messages HTTP/1.1\r\nHost: smsq\r\nContent-Type: application/json\r\n"
                f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
                "\r\n"
            )
            # The request is in flight, half its body sent, when the stop begins:
            # the service has asked for the body, so it has taken the connection.
            # (Sent and signalled at once, the connection could still be waiting
            # to be accepted, and a stop resets those: one CI run in a few.)
            conn.sendall(head.encode())
            assert conn.recv(4096).startswith(b"HTTP/1.1 100 Continue")
            conn.sendall(body[:10].encode())
            server.send_signal(signal.SIGTERM)
            until(lambda: not listening(port))
            conn.sendall(body[10:].encode())
            answer = read_all(conn)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        assert server.wait(20) == 0


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def read_all(conn: socket.socket) -> bytes:
    conn.settimeout(20)
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_serve_refuses_a_public_address_until_a_key_exists_then_requires_it(
    db: str, tmp_path: Path
) -> None:
    env = {"SMSQ_DATABASE_URL": db, "SMSQ_HOST": "0.0.0.0", "SMSQ_LOG_LEVEL": "WARNING"}
    refused = smsq("serve", env=env)
    assert refused.returncode != 0
    assert "refusing to listen on 0.0.0.0" in refused.stderr
    assert "smsq keys create" in refused.stderr

    made = smsq("keys", "create", "--scopes", "read,write", "--name", "ci", env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    key_id = token.split("_")[1]
    assert "cannot be shown again" in made.stderr
    listed = smsq("keys", "list", env=env)
    assert key_id in listed.stdout
    assert "read,write" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout

    with serving(env, tmp_path / "serve.log") as url:
        assert httpx.get(f"{url}/messages").status_code == 401
        authorised = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/messages", headers=authorised).status_code == 200
        assert httpx.get(f"{url}/events", headers=authorised).status_code == 403
        assert smsq("keys", "revoke", key_id, env=env).returncode == 0
        until(lambda: httpx.get(f"{url}/messages", headers=authorised).status_code == 401)
    # The access stream's events are in the log, and its types filter it too.
    revoked = smsq("events", "--type", "ApiKeyRevoked", env=env)
    assert revoked.returncode == 0, revoked.stderr
    printed = [json.loads(line) for line in revoked.stdout.splitlines()]
    assert {e["type"] for e in printed} == {"ApiKeyRevoked"}
    assert key_id in {e["data"]["key_id"] for e in printed}
    assert smsq("keys", "revoke", "000000000000", env=env).returncode != 0
    bad = smsq("keys", "create", "--scopes", "read,admin", env=env)
    assert bad.returncode != 0
    assert "admin" in bad.stderr


def test_smsq_events_prints_the_log_and_follows_it(db: str, tmp_path: Path) -> None:
    env = {"SMSQ_DATABASE_URL": db, "SMSQ_LOG_LEVEL": "WARNING"}
    with serving(env, tmp_path / "serve.log") as url:

        def post(text: str) -> str:
            body = {"from": random_phone(), "to": "+447911123456", "message": text}
            response = httpx.post(f"{url}/messages", json=body)
            assert response.status_code == 201
            return str(response.json()["id"])

        first = post("first")
        until(lambda: httpx.get(f"{url}/messages/{first}").json()["status"] == "processed")
        printed = smsq("events", "--stream", first, env=env)
        assert printed.returncode == 0, printed.stderr
        events = [json.loads(line) for line in printed.stdout.splitlines()]
        assert [(e["type"], e["version"]) for e in events] == [
            ("SmsReceived", 1),
            ("SmsProcessed", 2),
        ]
        assert events == httpx.get(f"{url}/messages/{first}/events").json()["items"]
        typed = smsq("events", "--type", "SmsProcessed", env=env)
        assert {json.loads(line)["type"] for line in typed.stdout.splitlines()} == {"SmsProcessed"}

        last = events[-1]["position"]
        follow_log = tmp_path / "follow.log"
        with smsq_process(["events", "--follow", "--after", str(last)], env, follow_log) as tail:
            second = post("second")

            def followed() -> list[dict[str, Any]]:
                lines = follow_log.read_text().splitlines()
                seen = [json.loads(line) for line in lines if line.startswith("{")]
                mine = [e for e in seen if e["stream_id"] == f"sms-{second}"]
                return mine if len(mine) == 2 else []

            assert [e["type"] for e in until(followed)] == ["SmsReceived", "SmsProcessed"]
            tail.send_signal(signal.SIGINT)
            assert tail.wait(10) == 0
        assert "Traceback" not in follow_log.read_text()


def behind_by_one(databases: Databases) -> str:
    """A database migrated up to, not including, the latest migration."""
    name = f"smsq_behind_{uuid4().hex[:12]}"
    with psycopg.connect(databases.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = databases.url(name)
    migrate(url, migrations=available()[:-1])
    return url


async def test_readyz_is_503_until_the_migrations_are_current(
    databases: Databases, tmp_path: Path
) -> None:
    url = behind_by_one(databases)
    latest = available()[-1].name
    settings = Settings(database_url=url, run_projectors=False, data_dir=tmp_path / "data")
    async with running(create_app(settings)) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
            behind = await client.get("/readyz")
            assert behind.status_code == 503
            assert behind.headers["content-type"] == "application/problem+json"
            problem = behind.json()
            assert (problem["status"], problem["type"]) == (503, "/problems/not-ready")
            # The answer is public: which migration is missing goes to the log only.
            assert latest not in problem["detail"]
            assert (await client.get("/healthz")).status_code == 200

            assert migrate(url) == [latest]
            # Answered from the probe of about once a second.
            deadline = time.monotonic() + 3
            while (ready := await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                await asyncio.sleep(0.05)
            assert ready.json() == {"status": "ready"}
