"""The embedded path set up as a production one: the service connects as
smsq_service, the auditor's commands as smsq_auditor, the seal key is private."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import httpx
import psycopg

from api.runtime.embedded import embedded_server
from tests.support.phones import random_phone
from tests.support.servers import SMSQ, serving


def test_serve_connects_as_the_service_and_verify_as_the_auditor(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if k != "SMSQ_DATABASE_URL"},
        "SMSQ_DATA_DIR": str(data),
        "SMSQ_LOG_LEVEL": "WARNING",
        "SMSQ_DATABASE_URL": "",
    }
    made = subprocess.run(
        [SMSQ, "keys", "create", "--scopes", "read,write,audit"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = made.stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    with serving(env, tmp_path / "serve.log") as url:
        sent = {"from": random_phone(), "to": "+447911123456", "message": "least privilege"}
        created = httpx.post(f"{url}/messages", json=sent, headers=auth, timeout=10)
        assert created.status_code == 201
        deadline = time.monotonic() + 15
        while not httpx.get(f"{url}/audit/seals", headers=auth, timeout=10).json()["items"]:
            assert time.monotonic() < deadline, "nothing was sealed"
            time.sleep(0.1)

        with (
            embedded_server(data) as owner_url,
            psycopg.connect(owner_url, autocommit=True) as conn,
        ):
            users = {
                row[0]
                for row in conn.execute(
                    "SELECT usename FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
            }
        assert users == {"smsq_service"}

        # Both only read, each as the auditor: run at once, as two auditors
        # may, they take one process start's time instead of two.
        readers = [
            subprocess.Popen(
                [SMSQ, command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for command in ("verify", "events")
        ]
        (verified, verify_log), (events, events_log) = (r.communicate(timeout=60) for r in readers)
        assert readers[0].returncode == 0, verified + verify_log
        assert "0 faults" in verify_log
        assert readers[1].returncode == 0, events_log
        assert '"type":"ApiKeyCreated"' in events
        assert '"hash":"' in events

    key = data / "seal-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
