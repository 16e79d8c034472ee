"""The OpenAPI document against a real `smsq serve` with a key: schemathesis, every
check and every phase (examples, coverage, fuzzing, stateful), as a client would run it.

Run through its command line, from the checkout, so that it reads
`schemathesis.toml` (the formats no schema can state, tests/support/fuzz_hooks.py)
just as `schemathesis run` does for anyone. Bounded so the suite stays quick;
raise SMSQ_FUZZ_EXAMPLES for a longer run (docs/reliability.md gives the command).
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from api.http.app import create_app
from api.runtime.keys import create_key
from api.runtime.settings import Settings
from tests.support.servers import serving

EXAMPLES = int(os.environ.get("SMSQ_FUZZ_EXAMPLES", "15"))
SEED = os.environ.get("SMSQ_FUZZ_SEED", "20261130")
CHECKOUT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")


@pytest.fixture(scope="module")
def token(database_url: str) -> str:
    """A key with every scope: the service is closed, as in production."""

    async def made() -> str:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            scopes = ["read", "write", "audit", "metrics"]
            return (await create_key(conn, scopes, name="fuzz")).token

    return asyncio.run(made())


@pytest.fixture(scope="module")
def keyed(
    token: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A real `smsq serve` started after the key was made, and the key's token."""
    workdir = tmp_path_factory.mktemp("fuzz")
    env = {
        "SMSQ_DATABASE_URL": database_url,
        "SMSQ_DATA_DIR": str(workdir / "data"),
        "SMSQ_LOG_LEVEL": "WARNING",
        "SMSQ_BODY_TIMEOUT": "1",
    }
    with serving(env, workdir / "serve.log") as url:
        yield url, token


def test_schemathesis_finds_nothing_with_every_check_and_phase(keyed: tuple[str, str]) -> None:
    url, token = keyed
    run = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{url}/schema/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            SEED,
            "--generation-database",
            "none",
            "--no-color",
        ],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        # The default run takes well under it; a longer one, in proportion.
        timeout=170 * max(1, math.ceil(EXAMPLES / 15)),
        check=False,
    )
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    assert "No issues found" in run.stdout


def test_the_fuzzed_document_is_the_one_the_server_publishes(keyed: tuple[str, str]) -> None:
    url, token = keyed
    published = httpx.get(
        f"{url}/schema/openapi.json", headers={"Authorization": f"Bearer {token}"}
    ).json()
    app = create_app(Settings(database_url="postgresql:///never-connected"))
    assert published == app.openapi_schema.to_schema()
