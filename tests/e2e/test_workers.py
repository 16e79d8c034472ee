"""Workers and replay as separate processes, killed at the worst moments."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.postgres import Databases
from tests.support.seed import seed_messages
from tests.support.servers import SMSQ, crash, smsq_process

MESSAGES = 20_000


def query(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement.encode(), params).fetchall()


def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def position(url: str, name: str) -> int:
    rows = query(url, "SELECT position FROM projection_checkpoints WHERE name = %s", (name,))
    return int(rows[0][0]) if rows else 0


def caught_up(url: str) -> bool:
    processed = query(url, "SELECT count(*) FROM events WHERE type = 'SmsProcessed'")[0][0]
    end = query(url, "SELECT max(position) FROM events")[0][0]
    return bool(processed == MESSAGES and position(url, "sms_messages") == end)


def snapshot(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT * FROM sms_messages ORDER BY id")


@pytest.fixture
def url(databases: Databases) -> str:
    url = databases.create()
    seed_messages(url, MESSAGES, processed=0, media=0.1)
    return url


def env(url: str) -> dict[str, str]:
    return {"SMSQ_DATABASE_URL": url, "SMSQ_LOG_LEVEL": "WARNING"}


def test_a_worker_killed_mid_batch_resumes_and_matches_a_fresh_replay(
    url: str, tmp_path: Path
) -> None:
    with smsq_process(["worker"], env(url), tmp_path / "first.log") as first:
        wait_for(lambda: position(url, "processing") > 0, 30, "the first batch")
        crash(first)
    assert not caught_up(url)
    with smsq_process(["worker"], env(url), tmp_path / "second.log"):
        wait_for(lambda: caught_up(url), 120, "the restarted worker to catch up")
    folded = snapshot(url)
    # Every message processed exactly once, despite the kill.
    assert query(
        url,
        "SELECT count(*), count(DISTINCT stream_id) FROM events WHERE type = 'SmsProcessed'",
    ) == [(MESSAGES, MESSAGES)]

    subprocess.run(
        [SMSQ, "replay", "sms_messages"],
        env={**os.environ, **env(url)},
        check=True,
        capture_output=True,
    )
    assert snapshot(url) == folded


def test_a_replay_killed_midway_leaves_the_live_model_and_a_rerun_completes(
    url: str, tmp_path: Path
) -> None:
    with smsq_process(["worker"], env(url), tmp_path / "worker.log"):
        wait_for(lambda: caught_up(url), 120, "the worker to catch up")
    live = snapshot(url)
    checkpoint = position(url, "sms_messages")

    with smsq_process(["replay", "--chunk", "500"], env(url), tmp_path / "replay.log") as run:
        wait_for(
            lambda: (
                query(
                    url, "SELECT count(*) FROM pg_tables WHERE tablename = 'sms_messages__shadow'"
                )[0][0]
                == 1
            ),
            30,
            "the shadow table",
        )
        time.sleep(0.2)
        crash(run)
    assert snapshot(url) == live
    assert position(url, "sms_messages") == checkpoint

    done = subprocess.run(
        [SMSQ, "replay"], env={**os.environ, **env(url)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "sms_messages rebuilt from" in done.stderr
    assert snapshot(url) == live
    assert query(
        url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sms_messages\\_\\_%%'"
    ) == [(0,)]


def test_a_standby_worker_carries_on_when_the_active_one_dies(url: str, tmp_path: Path) -> None:
    with (
        smsq_process(["worker"], env(url), tmp_path / "a.log") as a,
        smsq_process(["worker"], env(url), tmp_path / "b.log"),
    ):
        wait_for(lambda: position(url, "processing") > 0, 30, "processing to start")
        crash(a)
        wait_for(lambda: caught_up(url), 120, "the survivor to finish")
    assert query(url, "SELECT count(*) FROM sms_messages WHERE status = 'processed'") == [
        (MESSAGES,)
    ]
