"""Every operation in the OpenAPI document, fuzzed against a running server: no 5xx.

Bounded so the suite stays quick; raise SMSQ_FUZZ_EXAMPLES for a longer run
(the README gives the command).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.settings import Settings
from tests.support.servers import serving

EXAMPLES = int(os.environ.get("SMSQ_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def base_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("fuzz") / "serve.log"
    env = {"SMSQ_DATABASE_URL": database_url, "SMSQ_LOG_LEVEL": "WARNING", "SMSQ_BODY_TIMEOUT": "1"}
    with serving(env, log) as url:
        yield url


def served_document() -> dict[str, Any]:
    """The OpenAPI document the server publishes, built without a database."""
    app = create_app(Settings(database_url="postgresql:///never-connected"))
    return app.openapi_schema.to_schema()


schema = schemathesis.openapi.from_dict(served_document())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_makes_the_server_fail(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=10)


def test_the_fuzzed_document_is_the_one_the_server_publishes(base_url: str) -> None:
    published = httpx.get(f"{base_url}/schema/openapi.json").json()
    assert published == served_document()
