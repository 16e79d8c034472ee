"""Workers and replay as separate processes, killed at the worst moments."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest

from projections.catalog import read_models
from tests.support.postgres import Databases
from tests.support.seed import seed_messages
from tests.support.servers import SMSQ, crash, smsq_process

# Five of the worker's batches of 1,000 (projections.runner): the kill and the
# freeze land after the first, with several still to do; more messages only
# lengthen every catch-up.
MESSAGES = 5_000


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
    # The last event in reading order, (tx_id, position): the highest position
    # when commits come in order, not always otherwise.
    end = query(url, "SELECT position FROM events ORDER BY tx_id DESC, position DESC LIMIT 1")
    return bool(processed == MESSAGES and position(url, "sms_messages") == end[0][0])


def snapshot(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT * FROM sms_messages ORDER BY id")


def assert_processed_once_and_as_replayed(url: str) -> None:
    """One SmsProcessed per message, and the model as a fresh replay builds it."""
    assert query(
        url,
        "SELECT count(*), count(DISTINCT stream_id) FROM events WHERE type = 'SmsProcessed'",
    ) == [(MESSAGES, MESSAGES)]
    folded = snapshot(url)
    subprocess.run(
        [SMSQ, "replay", "sms_messages"],
        env={**os.environ, **env(url)},
        check=True,
        capture_output=True,
    )
    assert snapshot(url) == folded


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
    # Every message processed exactly once, despite the kill.
    assert_processed_once_and_as_replayed(url)


def test_a_replay_killed_midway_leaves_the_live_model_and_a_rerun_completes(
    url: str, tmp_path: Path
) -> None:
    with smsq_process(["worker"], env(url), tmp_path / "worker.log"):
        wait_for(lambda: caught_up(url), 120, "the worker to catch up")
    live = snapshot(url)
    checkpoint = position(url, "sms_messages")

    # Chunks of 100 events: about a hundred of them before the swap, and the kill
    # comes as soon as the first has been committed to the shadow table.
    with smsq_process(["replay", "--chunk", "100"], env(url), tmp_path / "replay.log") as run:
        wait_for(lambda: shadow_exists(url), 30, "the shadow table")
        wait_for(
            lambda: bool(query(url, "SELECT EXISTS (SELECT FROM sms_messages__shadow)")[0][0]),
            30,
            "the first chunk",
        )
        crash(run)
    # Killed midway: its shadow is left, not swapped in.
    assert shadow_exists(url)
    assert snapshot(url) == live
    assert position(url, "sms_messages") == checkpoint

    done = subprocess.run(
        [SMSQ, "replay"], env={**os.environ, **env(url)}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    # Every read model, in one pass over the log.
    assert f"{', '.join(read_models())} rebuilt from" in done.stderr
    assert snapshot(url) == live
    assert query(
        url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sms_messages\\_\\_%%'"
    ) == [(0,)]


def shadow_exists(url: str) -> bool:
    tables = "SELECT count(*) FROM pg_tables WHERE tablename = 'sms_messages__shadow'"
    return bool(query(url, tables)[0][0] == 1)


class Holder(NamedTuple):
    app: str
    waits_for: str | None  # `Client`: for its client to send, or to read what it sent


def lease_holder(url: str, name: str) -> Holder | None:
    """The session holding a projector's lease, if one does.

    The lease is a row lock, which pg_locks does not list; but the row's xmax
    names the locking transaction, and only while it is open does a session
    have that transaction id.
    """
    rows = query(
        url,
        "SELECT s.application_name, s.wait_event_type FROM projection_checkpoints AS c"
        " JOIN pg_stat_activity AS s ON s.backend_xid = c.xmax WHERE c.name = %s",
        (name,),
    )
    return Holder(*rows[0]) if rows else None


def frozen_mid_batch(url: str, app: str) -> bool:
    return lease_holder(url, "processing") == (app, "Client")


def freeze_holding_the_lease(proc: subprocess.Popen[bytes], url: str, app: str) -> None:
    """SIGSTOP the worker in the middle of a processing batch, its lease held.

    Once its session waits on the stopped process (for more to read, or for
    room to write), the lease stays held until the process dies. Stopped at a
    bad moment (a commit on its way), it is let go and stopped again.
    """
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, f"never stopped {app} holding the lease"
        holder = lease_holder(url, "processing")
        if holder is None or holder.app != app:
            time.sleep(0.005)
            continue
        os.killpg(proc.pid, signal.SIGSTOP)
        # Its session finishes the statement in hand, then waits on the process.
        settle = time.monotonic() + 2
        while time.monotonic() < settle:
            holder = lease_holder(url, "processing")
            if holder is None or holder.waits_for == "Client":
                break
            time.sleep(0.01)
        time.sleep(0.2)  # whatever was still in the socket has been read by now
        if frozen_mid_batch(url, app):
            return
        os.killpg(proc.pid, signal.SIGCONT)


def sessions(url: str, app: str, condition: str) -> int:
    statement = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND {condition}"
    return int(query(url, statement, (app,))[0][0])


def processed(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM events WHERE type = 'SmsProcessed'")[0][0])


def test_a_standby_worker_carries_on_when_the_active_one_dies(url: str, tmp_path: Path) -> None:
    a_env, b_env = ({**env(url), "PGAPPNAME": f"smsq-worker-{n}"} for n in "ab")
    with smsq_process(["worker"], a_env, tmp_path / "a.log") as a:
        # `a` alone: the work done so far is its own.
        wait_for(lambda: position(url, "processing") > 0, 30, "a's first batch")
        freeze_holding_the_lease(a, url, "smsq-worker-a")
        done_by_a, checkpoint = processed(url), position(url, "processing")
        assert 0 < done_by_a < MESSAGES

        with smsq_process(["worker"], b_env, tmp_path / "b.log"):
            wait_for(
                lambda: sessions(url, "smsq-worker-b", "query LIKE 'LISTEN%%'") > 0,
                30,
                "b to start",
            )
            # `b` stands by while `a` lives, for several of its polls: it processes
            # nothing, and it is not queued behind a's locks either.
            until = time.monotonic() + 1.5
            while time.monotonic() < until:
                assert frozen_mid_batch(url, "smsq-worker-a")
                assert (processed(url), position(url, "processing")) == (done_by_a, checkpoint)
                assert sessions(url, "smsq-worker-b", "wait_event_type = 'Lock'") == 0
                time.sleep(0.05)

            crash(a)
            wait_for(lambda: caught_up(url), 60, "b to take over and finish")
    # Every message processed exactly once: a's batch in flight died with it.
    assert_processed_once_and_as_replayed(url)
