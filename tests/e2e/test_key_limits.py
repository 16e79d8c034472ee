"""Against a real `smsq serve`: each key's own rate and senders, refusals of made-up
keys that cost the database nothing, and anonymous access decided by the connection."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from api.http.readiness import PROBE_EVERY
from migrations import migrate
from tests.support.phones import random_phone
from tests.support.postgres import Databases, OwnServer, cluster_dir
from tests.support.servers import SMSQ, serving

ROOT = Path(__file__).parents[2]
# 10,000 in a full run (SMSQ_TEST_RANDOM_KEYS=10000); fewer by default, to keep the suite quick.
RANDOM_KEYS = int(os.environ.get("SMSQ_TEST_RANDOM_KEYS", "2000"))


def make_key(env: dict[str, str], *options: str) -> str:
    made = subprocess.run(
        [SMSQ, "keys", "create", *options],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sms(sender: str) -> dict[str, str]:
    return {"from": sender, "to": "+447911123456", "message": secrets.token_hex(4)}


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data = tmp_path_factory.mktemp("keys")
    return {
        "SMSQ_DATABASE_URL": database_url,
        "SMSQ_DATA_DIR": str(data / "data"),
        "SMSQ_LOG_LEVEL": "WARNING",
    }


@pytest.fixture(scope="module")
def url(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serving(env, tmp_path_factory.mktemp("serve") / "serve.log") as base:
        yield base


def test_a_key_over_its_rate_is_refused_while_another_keeps_its_full_quota(
    env: dict[str, str], url: str
) -> None:
    # One request per 5 s (a bucket of one), and twenty a second.
    slow = make_key(env, "--scopes", "read,write", "--rate", "0.2/s")
    fast = make_key(env, "--scopes", "read,write", "--rate", "20/s")
    # Made while the service runs: it learns of them by notification.
    with httpx.Client(base_url=url, timeout=10) as client:
        first = client.post("/messages", json=sms(random_phone()), headers=bearer(slow))
        while first.status_code == 401:  # the notification may still be on its way
            first = client.post("/messages", json=sms(random_phone()), headers=bearer(slow))
        assert first.status_code == 201, first.text
        # The key's bucket (1, now empty) is tighter than the sender's window (5, 4 left).
        assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == (
            "1",
            "0",
        )
        refused = client.get("/messages", headers=bearer(slow))
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/key-rate-limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 5
        assert refused.headers["ratelimit-limit"] == "1"
        assert refused.headers["ratelimit-remaining"] == "0"

        remaining = []
        for _ in range(10):
            answered = client.get("/messages", headers=bearer(fast))
            while answered.status_code == 401:
                answered = client.get("/messages", headers=bearer(fast))
            assert answered.status_code == 200, answered.text
            assert answered.headers["ratelimit-limit"] == "20"
            remaining.append(int(answered.headers["ratelimit-remaining"]))
        # Its bucket started full: the other key's refusals took nothing from it.
        assert remaining[0] == 19
        assert client.get("/messages", headers=bearer(slow)).status_code == 429


def test_a_key_made_with_senders_may_send_from_those_only(env: dict[str, str], url: str) -> None:
    mine, other = random_phone(), random_phone()
    token = make_key(env, "--scopes", "read,write", "--senders", f"{mine}, {mine}")
    listed = subprocess.run(
        [SMSQ, "keys", "list"], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert mine in listed.stdout
    with httpx.Client(base_url=url, timeout=10) as client:
        sent = client.post("/messages", json=sms(mine), headers=bearer(token))
        while sent.status_code == 401:  # the notification may still be on its way
            sent = client.post("/messages", json=sms(mine), headers=bearer(token))
        assert sent.status_code == 201, sent.text
        refused = client.post("/messages", json=sms(other), headers=bearer(token))
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert (problem["status"], problem["type"]) == (403, "/problems/sender-not-allowed")
        assert other in problem["detail"]
        stored = client.get("/messages", params={"from": other}, headers=bearer(token))
        assert stored.json()["items"] == []


def test_a_bad_rate_or_sender_is_refused_by_the_command_line(env: dict[str, str]) -> None:
    for option, value in (("--rate", "5/min"), ("--senders", "+1234567890")):
        made = subprocess.run(
            [SMSQ, "keys", "create", "--scopes", "read", option, value],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        assert made.returncode != 0
        assert value in made.stderr


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database on a server of its own that counts every statement it runs
    (pg_stat_statements must be loaded when the server starts)."""
    with cluster_dir() as workdir:
        server = OwnServer(workdir)
        try:
            with psycopg.connect(server.admin_url, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
                conn.execute("CREATE DATABASE counted")
            server.stop()
            server.start()
            url = server.url("counted")
            migrate(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
            yield url
        finally:
            server.close()


# Every statement the database ran, but those of the readiness probe (about one
# a second, whatever the requests) and of this count itself.
_STATEMENTS = """
SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%%pg_stat_statements%%'
  AND query NOT LIKE '%%FROM schema_migrations%%'
  AND query NOT LIKE '%%FROM projection_checkpoints%%'
"""


@pytest.fixture(scope="module")
def counted_service(
    counted: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """`smsq serve` on the counting database, for the tests that count its
    statements, and a real key made before it starts (so loaded at its start)."""
    workdir = tmp_path_factory.mktemp("counted")
    env = {
        "SMSQ_DATABASE_URL": counted,
        "SMSQ_DATA_DIR": str(workdir / "data"),
        "SMSQ_RUN_PROJECTORS": "false",
        "SMSQ_LOG_LEVEL": "WARNING",
    }
    real = make_key(env, "--scopes", "read")
    with serving(env, workdir / "serve.log") as url:
        yield url, real


def statements(conn: psycopg.Connection) -> int:
    row = conn.execute(_STATEMENTS).fetchone()
    assert row is not None
    return int(row[0])


def made_up_tokens(real: str, count: int) -> list[str]:
    real_id = real.split("_")[1]
    shapes = [
        lambda: f"smsq_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}",  # unknown id
        lambda: f"smsq_{real_id}_{secrets.token_urlsafe(32)}",  # a real id, a wrong secret
        lambda: secrets.token_urlsafe(24),  # not a token at all
    ]
    return [shapes[n % len(shapes)]() for n in range(count)]


async def ask_all(url: str, tokens: list[str]) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue = iter(tokens)

    async def worker(client: httpx.AsyncClient) -> None:
        for token in queue:
            status = (await client.get("/messages", headers=bearer(token))).status_code
            statuses[status] = statuses.get(status, 0) + 1

    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(16)))
    return statuses


def test_made_up_keys_are_refused_without_a_database_query(
    counted: str, counted_service: tuple[str, str]
) -> None:
    url, real = counted_service
    with psycopg.connect(counted, autocommit=True) as conn:
        # The service has loaded its keys: the real one is accepted.
        assert httpx.get(f"{url}/messages", headers=bearer(real)).status_code == 200
        before = statements(conn)
        statuses = asyncio.run(ask_all(url, made_up_tokens(real, RANDOM_KEYS)))
        after = statements(conn)
        assert statuses == {401: RANDOM_KEYS}
        assert after == before
        # The count is live: a request that reads the database shows in it at once.
        assert httpx.get(f"{url}/messages", headers=bearer(real)).status_code == 200
        assert statements(conn) > after


# As root, a network namespace alone; otherwise in a user namespace too, where
# the database's socket may be out of reach (then the test says so).
UNSHARE = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


def namespaces_work() -> str | None:
    """Why a network namespace of the test's own cannot be had, if it cannot."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    tried = subprocess.run(
        [*UNSHARE, "ip", "link", "set", "lo", "up"], capture_output=True, text=True
    )
    if tried.returncode != 0:
        return f"this machine refuses an unprivileged network namespace: {tried.stderr.strip()}"
    return None


def test_with_no_key_made_a_peer_on_a_non_loopback_address_is_refused(
    databases: Databases, tmp_path: Path
) -> None:
    why = namespaces_work()
    if why:
        pytest.skip(why)
    url = databases.create()
    if not str(conninfo_to_dict(url).get("host", "")).startswith("/"):
        pytest.skip("the test database is reached over TCP, which a new namespace cannot reach")
    ran = subprocess.run(
        [*UNSHARE, sys.executable, "-m", "tests.support.netns", str(tmp_path)],
        env={**os.environ, "SMSQ_DATABASE_URL": url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ran.returncode == 0, ran.stderr + "".join(p.read_text() for p in tmp_path.glob("*.log"))
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen == {
        "serve, from 127.0.0.1": 200,
        "serve, from 10.77.0.1": 401,
        "granian on 10.77.0.1, from 10.77.0.1": 401,
    }


def probes(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
        " WHERE query LIKE '%FROM schema_migrations%'"
        " AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_readiness_is_answered_from_a_probe_made_about_once_a_second(
    counted: str, counted_service: tuple[str, str]
) -> None:
    url, _ = counted_service
    with (
        psycopg.connect(counted, autocommit=True) as conn,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        before, started = probes(conn), time.monotonic()
        answers = [client.get("/readyz") for _ in range(300)]
        seconds = time.monotonic() - started
        assert {a.status_code for a in answers} == {200}
        assert probes(conn) - before <= seconds / PROBE_EVERY + 2
