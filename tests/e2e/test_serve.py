"""`smsq serve` with no database configured: the embedded PostgreSQL path."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.support.phones import random_phone
from tests.support.servers import serving


def test_the_embedded_database_keeps_its_data_across_restarts(
    tmp_path: Path, cluster_path: Path
) -> None:
    env = {"SMSQ_DATA_DIR": str(cluster_path / "data"), "SMSQ_LOG_LEVEL": "WARNING"}
    env_without_url = {k: v for k, v in os.environ.items() if k != "SMSQ_DATABASE_URL"}
    os_env = {**env_without_url, **env, "SMSQ_DATABASE_URL": ""}
    sent = {"from": random_phone(), "to": "+447911123456", "message": "survives restarts"}

    with serving(os_env, tmp_path / "first.log") as url:
        created = httpx.post(f"{url}/messages", json=sent, timeout=10)
        assert created.status_code == 201
    pgdata = cluster_path / "data" / "postgres"
    assert (pgdata / "PG_VERSION").exists()
    # A clean stop removes the postmaster's pid file.
    assert not (pgdata / "postmaster.pid").exists()

    with serving(os_env, tmp_path / "second.log") as url:
        again = httpx.get(f"{url}{created.headers['location']}", timeout=10)
    assert again.status_code == 200
    assert again.json()["message"] == "survives restarts"
