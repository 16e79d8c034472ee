"""Every operation in the OpenAPI document, fuzzed against a running server: no 5xx.

Bounded so the suite stays quick; raise SMSQ_FUZZ_EXAMPLES for a longer run
(the README gives the command).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api.http.app import create_app
from api.runtime.settings import Settings
from tests.support.images import png
from tests.support.phones import random_phone

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
def test_no_input_makes_the_server_fail(
    case: schemathesis.Case, served: str, existing: dict[str, str]
) -> None:
    case.call_and_validate(base_url=served, checks=[not_a_server_error], timeout=10)
    # Made-up ids mostly meet a 404 before anything else is looked at: send
    # the same case again about a message (and an image) that exist, so that
    # the fuzzed bodies, uploads and parameters reach the code behind them.
    known = {k: v for k, v in existing.items() if k in (case.path_parameters or {})}
    if known:
        case.path_parameters = {**(case.path_parameters or {}), **known}
        case.call_and_validate(base_url=served, checks=[not_a_server_error], timeout=10)


@pytest.fixture(scope="module")
def existing(served: str) -> dict[str, str]:
    """Path parameters naming a stored message and a stored image."""
    sent = {"from": random_phone(), "to": "+447911123456", "message": "fuzz me"}
    with httpx.Client(base_url=served) as client:
        message_id = client.post("/messages", json=sent).json()["id"]
        attached = client.post(
            f"/messages/{message_id}/media", files=[("file", ("a.png", png(), "image/png"))]
        )
    return {"message_id": message_id, "sha256": attached.json()["items"][0]["sha256"]}


def test_the_fuzzed_document_is_the_one_the_server_publishes(served: str) -> None:
    published = httpx.get(f"{served}/schema/openapi.json").json()
    assert published == served_document()
