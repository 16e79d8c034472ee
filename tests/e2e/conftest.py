from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import serving


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `smsq serve` (granian, HTTP on a socket) on this module's database."""
    workdir = tmp_path_factory.mktemp("serve")
    env = {
        "SMSQ_DATABASE_URL": database_url,
        "SMSQ_DATA_DIR": str(workdir / "data"),
        "SMSQ_LOG_LEVEL": "WARNING",
        "SMSQ_BODY_TIMEOUT": "1",
    }
    log = workdir / "serve.log"
    with serving(env, log) as url:
        yield url
