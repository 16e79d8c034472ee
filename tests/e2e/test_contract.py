"""What the OpenAPI document promises, and the answers that keep those promises."""

from __future__ import annotations

import httpx
import pytest

from api.http.app import create_app
from api.runtime.settings import Settings
from tests.support.asgi import IN_MODULE_LOOP


@pytest.fixture(scope="module")
def client(module_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """One app for the module's tests (tests/conftest.py, module_client)."""
    return module_client


ERROR_KEYS = {"type", "title", "status", "detail"}


def document() -> dict:
    return create_app(
        Settings(database_url="postgresql:///never-connected")
    ).openapi_schema.to_schema()


def test_every_error_the_document_declares_is_a_problem() -> None:
    operations = [
        (f"{method} {path}", operation)
        for path, item in document()["paths"].items()
        for method, operation in item.items()
    ]
    for name, operation in operations:
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (name, status)


def test_the_document_states_what_the_service_checks() -> None:
    doc = document()
    body = doc["components"]["schemas"]["SendSms"]
    assert body["additionalProperties"] is False
    assert body["properties"]["from"]["pattern"] == r"^\+[1-9][0-9]{1,14}$"
    assert (
        body["properties"]["message"]["minLength"],
        body["properties"]["message"]["maxLength"],
    ) == (1, 160)
    listing = {p["name"]: p["schema"] for p in doc["paths"]["/messages"]["get"]["parameters"]}
    assert (listing["limit"]["minimum"], listing["limit"]["maximum"]) == (1, 100)
    assert listing["offset"]["maximum"] == 2**63 - 1
    # Left out, a filter is absent: no `null` branch for a client to send as a word.
    assert listing["status"] == {"type": "string", "enum": ["received", "stored", "processed"]}
    sent = doc["paths"]["/messages"]["post"]["responses"]
    assert {"200", "201", "413", "415", "422", "429", "503"} <= set(sent)
    assert {"Retry-After", "RateLimit-Limit"} <= set(sent["429"]["headers"])
    assert {"Location", "Consistency-Token", "RateLimit-Remaining"} <= set(sent["201"]["headers"])
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain", "application/json"}


@IN_MODULE_LOOP
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("/messages?limit=5&limit=7", "limit"),
        ("/events?type=SmsReceived&type=SmsReceived", "type"),
        ("/events?type=null", "type"),
        ("/messages?status=null", "status"),
    ],
)
async def test_a_repeated_parameter_or_a_value_outside_its_choices_is_422(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    response = await client.get(query)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == field


@IN_MODULE_LOOP
async def test_a_value_among_the_choices_is_still_answered(client: httpx.AsyncClient) -> None:
    assert (await client.get("/events?type=SmsReceived")).status_code == 200
    assert (await client.get("/messages?status=stored&limit=5")).status_code == 200


@IN_MODULE_LOOP
async def test_the_metrics_text_names_its_charset_once(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith("text/plain")
    assert content_type.count("charset") == 1


@IN_MODULE_LOOP
async def test_a_body_refused_before_the_handler_for_its_size_is_a_problem(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/messages", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json().keys() >= ERROR_KEYS


@IN_MODULE_LOOP
@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/messages", "GET, OPTIONS, POST"),
        ("/messages/0190d0a4-0000-7000-8000-000000000000/media", "GET, OPTIONS, POST"),
        ("/events", "GET, OPTIONS"),
    ],
)
async def test_options_lists_every_method_of_the_path(
    client: httpx.AsyncClient, path: str, methods: str
) -> None:
    response = await client.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == methods


@IN_MODULE_LOOP
async def test_an_open_service_still_checks_a_credential_it_is_sent(
    client: httpx.AsyncClient,
) -> None:
    # No key was ever made here, and the client is on loopback: the service is open.
    assert (await client.get("/messages")).status_code == 200
    for credential in ("Bearer smsq_000000000000_made-up", "Bearer", "Basic dXNlcjpwYXNz"):
        response = await client.get("/messages", headers={"Authorization": credential})
        assert response.status_code == 401, credential
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith('Bearer realm="smsq"')
