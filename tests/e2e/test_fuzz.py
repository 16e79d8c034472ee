"""Every operation in the OpenAPI document, fuzzed against a running server: no 5xx.

Bounded so the suite stays quick; raise SMSQ_FUZZ_EXAMPLES for a longer run
(the README gives the command).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.settings import Settings

EXAMPLES = int(os.environ.get("SMSQ_FUZZ_EXAMPLES", "40"))


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
def test_no_input_makes_the_server_fail(case: schemathesis.Case, served: str) -> None:
    case.call_and_validate(base_url=served, checks=[not_a_server_error], timeout=10)


def test_the_fuzzed_document_is_the_one_the_server_publishes(served: str) -> None:
    published = httpx.get(f"{served}/schema/openapi.json").json()
    assert published == served_document()
