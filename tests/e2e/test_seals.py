"""Seals over HTTP, and `smsq verify` / `smsq events` as an auditor runs them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from psycopg import sql
from uuid_utils.compat import uuid4

from api.cli.main import main
from api.cli.support import as_role
from api.http.app import create_app
from api.runtime.settings import Settings
from migrations import available, migrate
from tests.support.asgi import running
from tests.support.phones import random_phone
from tests.support.postgres import Databases
from tests.support.servers import serving


async def sealed_message(client: httpx.AsyncClient) -> tuple[dict, dict]:
    sent = {"from": random_phone(), "to": "+447911123456", "message": "sealed"}
    created = await client.post("/messages", json=sent)
    assert created.status_code == 201
    [event] = (await client.get(f"/messages/{created.json()['id']}/events")).json()["items"][:1]
    deadline = time.monotonic() + 10
    while True:
        seals = (await client.get("/audit/seals", params={"limit": 1000})).json()["items"]
        if seals and seals[-1]["to_position"] >= event["position"]:
            return event, seals[-1]
        assert time.monotonic() < deadline, "no seal covered the event"
        await asyncio.sleep(0.05)


async def test_seals_are_signed_by_the_published_key(client: httpx.AsyncClient) -> None:
    event, seal = await sealed_message(client)
    assert len(event["hash"]) == 64
    assert set(seal) >= {
        "number",
        "from_position",
        "to_position",
        "events",
        "hash",
        "previous",
        "signature",
        "sealed_at",
    }
    response = await client.get("/audit/public-key")
    assert response.status_code == 200
    key = load_pem_public_key(response.content)
    assert isinstance(key, Ed25519PublicKey)
    key.verify(bytes.fromhex(seal["signature"]), bytes.fromhex(seal["hash"]))
    metrics = (await client.get("/metrics")).text
    assert "smsq_seal_lag_seconds " in metrics
    page = (await client.get("/audit/seals", params={"after": seal["number"] - 1})).json()
    assert page["items"][0]["number"] == seal["number"]
    assert page["next_after"] == page["items"][-1]["number"]


@pytest.fixture
async def own(databases: Databases, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client of an app on a database of its own: every seal signed by one key."""
    url = databases.create()
    settings = Settings(database_url=url, data_dir=tmp_path / "data")
    async with running(create_app(settings)) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
            yield c, url


async def test_verify_as_the_auditor_exits_0_on_a_clean_log_and_1_naming_a_fault(
    own: tuple[httpx.AsyncClient, str], tmp_path: Path
) -> None:
    client, database_url = own
    await sealed_message(client)
    pem = tmp_path / "seal.pub"
    pem.write_bytes((await client.get("/audit/public-key")).content)
    env = {"SMSQ_DATABASE_URL": as_role(database_url, "smsq_auditor")}
    runner = CliRunner()
    clean = runner.invoke(main, ["verify", "--public-key", str(pem)], env=env)
    assert clean.exit_code == 0, clean.output
    assert "0 faults" in clean.stderr

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        (position,) = (
            conn.execute(
                'UPDATE events SET metadata = metadata || \'{"actor": "x"}\''
                " WHERE position = (SELECT max(position) FROM events) RETURNING position"
            ).fetchone()
            or ()
        )
    dirty = runner.invoke(main, ["verify", "--public-key", str(pem)], env=env)
    assert dirty.exit_code == 1
    assert f"position {position}: the hash does not match the event's contents" in dirty.stdout

    # A key file that is no key is a usage error, before the log is read.
    pem.write_text("not a key")
    unusable = runner.invoke(main, ["verify", "--public-key", str(pem)], env=env)
    assert unusable.exit_code == 2
    assert "--public-key" in unusable.stderr
    assert "not a PEM public key" in unusable.stderr


def test_readers_refuse_a_schema_that_is_behind(databases: Databases) -> None:
    name = f"smsq_behind_{uuid4().hex[:12]}"
    with psycopg.connect(databases.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = databases.url(name)
    migrate(url, migrations=available()[:-1])
    for command in (["verify"], ["events"]):
        result = CliRunner().invoke(main, command, env={"SMSQ_DATABASE_URL": url})
        assert result.exit_code == 1
        assert "schema is behind" in result.stderr
        assert available()[-1].name in result.stderr
    # Nothing was migrated on the way.
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(available()) - 1,
        )


def test_smsq_serve_told_not_to_seal_makes_no_key(databases: Databases, tmp_path: Path) -> None:
    env = {
        "SMSQ_DATABASE_URL": databases.create(),
        "SMSQ_DATA_DIR": str(tmp_path / "data"),
        "SMSQ_LOG_LEVEL": "WARNING",
        "SMSQ_RUN_SEALER": "false",
    }
    with serving(env, tmp_path / "serve.log"):
        pass
    assert not (tmp_path / "data" / "seal-key.pem").exists()


async def test_a_process_told_not_to_seal_runs_the_projectors_and_never_seals(
    databases: Databases, tmp_path: Path
) -> None:
    url = databases.create()
    settings = Settings(database_url=url, data_dir=tmp_path / "data", run_sealer=False)
    async with running(create_app(settings)) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
            sent = {"from": random_phone(), "to": "+447911123456", "message": "unsealed"}
            created = await client.post("/messages", json=sent)
            assert created.status_code == 201
            deadline = time.monotonic() + 10
            while (await client.get(created.headers["location"])).json()["status"] != "processed":
                assert time.monotonic() < deadline, "the projectors did not run"
                await asyncio.sleep(0.05)
            assert (await client.get("/audit/seals")).json()["items"] == []
    assert not (tmp_path / "data" / "seal-key.pem").exists()
    with psycopg.connect(url) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM projection_checkpoints")}
    assert "sealer" not in names
    assert {"sms_messages", "processing"} <= names
