from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from api.http.app import create_app
from api.runtime.settings import Settings
from tests.support.asgi import running
from tests.support.servers import serving


@pytest.fixture(scope="module")
def served_settings() -> dict[str, str]:
    """Settings (SMSQ_* variables) of a module's `served` beyond the usual ones."""
    return {}


@pytest.fixture(scope="module")
def served(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, served_settings: dict[str, str]
) -> Iterator[str]:
    """A real `smsq serve` (granian, HTTP on a socket) on this module's database."""
    workdir = tmp_path_factory.mktemp("serve")
    env = {
        "SMSQ_DATABASE_URL": database_url,
        "SMSQ_DATA_DIR": str(workdir / "data"),
        "SMSQ_LOG_LEVEL": "WARNING",
        "SMSQ_BODY_TIMEOUT": "1",
        **served_settings,
    }
    log = workdir / "serve.log"
    with serving(env, log) as url:
        yield url


@pytest.fixture
async def still(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose projectors do not run: the test moves them, a step
    at a time, and so holds the read models at the places it chooses."""
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path / "d",
        run_projectors=False,
        consistency_wait=0.3,
    )
    async with running(create_app(settings)) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
            yield client
