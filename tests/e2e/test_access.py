"""API keys and scopes on every route, the open-on-loopback rule, and who the log names."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest
import pytest_asyncio
from litestar import Litestar
from litestar.routes import ASGIRoute
from psycopg_pool import AsyncConnectionPool

from api.http.access import Access
from api.http.app import create_app
from api.runtime.background import running_task
from api.runtime.keys import SCOPES, LiveKeys, create_key, live_keys, revoke_key
from api.runtime.settings import Settings
from projections.listener import Listener, listening
from tests.support.asgi import IN_MODULE_LOOP, running
from tests.support.images import png
from tests.support.phones import random_phone
from tests.support.postgres import Databases

SECRET = "A" * 43
SAMPLES = {
    "uuid": lambda: str(uuid4()),
    "str": lambda: "x",
    "int": lambda: "1",
    "path": lambda: "swagger-ui.css",
}


def routes(app: Litestar) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path template, opt) for every handler but Litestar's automatic OPTIONS."""
    for route in app.routes:
        if isinstance(route, ASGIRoute):  # a raw ASGI route (the live feed) answers GET
            yield "GET", route.path, dict(route.route_handler.opt)
            continue
        for handler in route.route_handlers:
            for method in getattr(handler, "http_methods", ()):
                if method != "OPTIONS":
                    yield method, route.path, dict(handler.opt)


def concrete(path: str) -> str:
    return re.sub(r"\{\w+:(\w+)\}", lambda m: SAMPLES[m.group(1)](), path)


def document_app() -> Litestar:
    return create_app(Settings(database_url="postgresql:///never-connected"))


PROTECTED = sorted(
    (method, path, opt["scope"])
    for method, path, opt in routes(document_app())
    if not opt.get("public")
)


def test_every_route_declares_a_scope_or_is_public() -> None:
    found = list(routes(document_app()))
    assert found
    undeclared = [
        (method, path)
        for method, path, opt in found
        if not (opt.get("public") is True or opt.get("scope") in SCOPES)
    ]
    assert undeclared == []
    public = {path for _, path, opt in found if opt.get("public")}
    assert public == {"/healthz", "/readyz"}


def test_the_openapi_document_declares_bearer_keys_and_each_operations_scope() -> None:
    document = document_app().openapi_schema.to_schema()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    for method, path, scope in PROTECTED:
        if path == "/events/stream":
            continue  # a raw ASGI route: docs/audit.md describes it, not the document
        if path.startswith("/schema"):
            # The document and its page serve the API; they are not operations of it.
            assert path not in document["paths"]
            continue
        operation = document["paths"][re.sub(r":\w+\}", "}", path)][method.lower()]
        assert operation["security"] == [{"bearer": [scope]}]
        assert {"401", "403"} <= set(operation["responses"])
    assert "security" not in document["paths"]["/healthz"]["get"]


@pytest.fixture(scope="module")
def keyed_url(databases: Databases) -> str:
    """A database of its own: making keys closes the service for everyone using it."""
    return databases.create()


def make_key(url: str, *scopes: str) -> str:
    async def made() -> str:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return (await create_key(conn, scopes, name="test")).token

    return asyncio.run(made())


@pytest.fixture(scope="module")
def tokens(keyed_url: str) -> dict[str, str]:
    """One key per scope, one with every scope."""
    made = {scope: make_key(keyed_url, scope) for scope in SCOPES}
    made["all"] = make_key(keyed_url, *SCOPES)
    return made


# One app for the tests that use `keyed`, on an event loop of the module's own:
# they ask, and write only messages of their own, so none needs a fresh one
# (each app is some 80 ms of processor time, its connections included).
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def keyed(keyed_url: str, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(Settings(database_url=keyed_url))) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
            yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    if response.request.method != "HEAD":  # (a HEAD's answer has no body)
        assert response.json()["status"] == status
    assert response.headers["www-authenticate"].startswith('Bearer realm="smsq"')


@IN_MODULE_LOOP
@pytest.mark.parametrize(("method", "path", "scope"), PROTECTED)
async def test_each_protected_route_is_401_without_a_live_key_and_403_without_its_scope(
    keyed: httpx.AsyncClient, tokens: dict[str, str], method: str, path: str, scope: str
) -> None:
    url = concrete(path)
    if path == "/events/stream":
        url += "?type=unknown"  # answered at once (422) once let through, not streamed
    assert_problem(await keyed.request(method, url), 401)
    for header in ("Bearer", "Basic dXNlcjpwYXNz", f"Bearer {tokens[scope]}x", "Bearer smsq_x"):
        assert_problem(await keyed.request(method, url, headers={"Authorization": header}), 401)
    for other in SCOPES:
        if other != scope:
            denied = await keyed.request(method, url, headers=bearer(tokens[other]))
            assert_problem(denied, 403)
            assert f'scope="{scope}"' in denied.headers["www-authenticate"]
    for allowed in (tokens[scope], tokens["all"]):
        answered = await keyed.request(method, url, headers=bearer(allowed))
        assert answered.status_code not in (401, 403), answered.text


@IN_MODULE_LOOP
async def test_health_and_readiness_need_no_key(keyed: httpx.AsyncClient) -> None:
    assert (await keyed.get("/healthz")).status_code == 200
    assert (await keyed.get("/readyz")).status_code == 200


@IN_MODULE_LOOP
async def test_the_log_names_the_key_and_the_request(
    keyed: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    writer = tokens["write"].split("_")[1]
    sent = {"from": random_phone(), "to": "+447911123456", "message": "who sent this?"}
    created = await keyed.post(
        "/messages", json=sent, headers={**bearer(tokens["write"]), "X-Request-ID": "req-42"}
    )
    assert created.status_code == 201
    assert created.headers["x-request-id"] == "req-42"
    path = f"/messages/{created.json()['id']}/events"
    deadline = time.monotonic() + 10
    while (
        len(items := (await keyed.get(path, headers=bearer(tokens["audit"]))).json()["items"]) < 2
    ):
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.02)
    received, processed = items
    assert received["metadata"]["actor"] == writer
    assert received["metadata"]["request_id"] == "req-42"
    assert received["metadata"]["correlation_id"] == received["metadata"]["causation_id"]
    # The processing stage acts on its own behalf, in the same correlation.
    assert processed["metadata"]["actor"] == "processing-stage"
    assert processed["metadata"]["request_id"] == "req-42"
    assert processed["metadata"]["correlation_id"] == received["metadata"]["correlation_id"]
    assert processed["metadata"]["causation_id"] == received["event_id"]

    # An upload is another request by another key: its event names them, and
    # starts a correlation of its own.
    uploader = tokens["all"].split("_")[1]
    attached = await keyed.post(
        f"/messages/{created.json()['id']}/media",
        files=[("file", ("a.png", png(seed=42), "image/png"))],
        headers={**bearer(tokens["all"]), "X-Request-ID": "req-43"},
    )
    assert attached.status_code == 201, attached.text
    events = (await keyed.get(path, headers=bearer(tokens["audit"]))).json()["items"]
    (media,) = [e for e in events if e["type"] == "MediaAttached"]
    assert media["metadata"]["actor"] == uploader
    assert media["metadata"]["request_id"] == "req-43"
    assert media["metadata"]["correlation_id"] == media["metadata"]["causation_id"]
    assert media["metadata"]["correlation_id"] != received["metadata"]["correlation_id"]


@IN_MODULE_LOOP
async def test_the_log_is_filtered_by_the_access_streams_types_too(
    keyed: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    answer = await keyed.get(
        "/events", params={"type": "ApiKeyCreated", "limit": 1000}, headers=bearer(tokens["audit"])
    )
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert {e["type"] for e in items} == {"ApiKeyCreated"}
    made = {token.split("_")[1] for token in tokens.values()}
    assert made <= {e["data"]["key_id"] for e in items}


@IN_MODULE_LOOP
@pytest.mark.parametrize("given", ["", "has space", "x" * 129, "caf\u00e9"])
async def test_an_unusable_request_id_is_replaced_by_one_of_ours(
    keyed: httpx.AsyncClient, given: str
) -> None:
    response = await keyed.get("/healthz", headers={"X-Request-ID": given.encode()})
    echoed = response.headers["x-request-id"]
    assert echoed != given
    assert re.fullmatch(r"[0-9a-f-]{36}", echoed)


@pytest.fixture
def fresh_url(databases: Databases) -> str:
    return databases.create()


async def until(check: Callable[[], Any], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_loopback_is_open_until_the_first_key_and_stays_closed_after_revoking_it(
    fresh_url: str,
) -> None:
    async with running(create_app(Settings(database_url=fresh_url))) as app:
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client,
            await psycopg.AsyncConnection.connect(fresh_url, autocommit=True) as conn,
        ):
            assert (await client.get("/messages")).status_code == 200
            issued = await create_key(conn, ["read"])

            async def closed() -> bool:
                return (await client.get("/messages")).status_code == 401

            await until(closed, within=2)

            async def admitted() -> bool:
                response = await client.get("/messages", headers=bearer(issued.token))
                return response.status_code == 200

            # Closed the moment the notification arrives; the new key is admitted
            # once the keys are reloaded, a query later.
            await until(admitted, within=2)
            await revoke_key(conn, issued.key.id)

            async def refused() -> bool:
                response = await client.get("/messages", headers=bearer(issued.token))
                return response.status_code == 401

            # Told by the notification of the revoking transaction, not by a timer.
            started = time.monotonic()
            await until(refused, within=2)
            assert time.monotonic() - started < 1
            # Revoking the last key does not reopen the service.
            assert (await client.get("/messages")).status_code == 401


def anonymous_refusal(response: httpx.Response) -> None:
    assert_problem(response, 401)
    assert "smsq keys create --scopes read,write" in response.json()["detail"]


async def test_with_no_key_made_a_peer_that_is_not_loopback_is_refused(fresh_url: str) -> None:
    async with running(create_app(Settings(database_url=fresh_url))) as app:
        for peer in ("203.0.113.7", "10.0.0.2", "::ffff:192.0.2.1", "2001:db8::1"):
            remote = httpx.ASGITransport(app=app, client=(peer, 40000))
            async with httpx.AsyncClient(transport=remote, base_url="http://smsq.test") as client:
                anonymous_refusal(await client.get("/messages"))
                anonymous_refusal(await client.post("/messages", json={}))
                assert (await client.get("/readyz")).status_code == 200
        for peer in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
            local = httpx.ASGITransport(app=app, client=(peer, 40000))
            async with httpx.AsyncClient(transport=local, base_url="http://smsq.test") as client:
                assert (await client.get("/messages")).status_code == 200, peer


@pytest.mark.parametrize(
    "header",
    [
        ("Forwarded", "for=203.0.113.7;proto=https"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Real-IP", "203.0.113.7"),
        ("x-forwarded-for", "127.0.0.1"),
    ],
)
async def test_with_no_key_made_a_request_through_a_proxy_is_refused(
    fresh_url: str, header: tuple[str, str]
) -> None:
    async with running(create_app(Settings(database_url=fresh_url))) as app:
        transport = httpx.ASGITransport(app=app)  # a loopback peer: the proxy's own
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
            assert (await client.get("/messages")).status_code == 200
            anonymous_refusal(await client.get("/messages", headers=dict([header])))


async def test_the_listening_address_does_not_open_or_close_the_service(fresh_url: str) -> None:
    """Decided by the peer alone: a setting that names a public address closes
    nothing for this machine, and the default opens nothing for others."""
    for host in ("0.0.0.0", "127.0.0.1"):
        async with running(create_app(Settings(database_url=fresh_url, host=host))) as app:
            local = httpx.ASGITransport(app=app)
            remote = httpx.ASGITransport(app=app, client=("198.51.100.1", 1))
            async with (
                httpx.AsyncClient(transport=local, base_url="http://smsq.test") as here,
                httpx.AsyncClient(transport=remote, base_url="http://smsq.test") as there,
            ):
                assert (await here.get("/messages")).status_code == 200
                anonymous_refusal(await there.get("/messages"))


class CountingPool(AsyncConnectionPool):
    """A real pool that counts how often a connection is taken from it."""

    taken = 0

    def connection(self, *args: Any, **kwargs: Any) -> Any:
        CountingPool.taken += 1
        return super().connection(*args, **kwargs)


async def test_keys_are_checked_in_memory_and_reloaded_when_one_changes(fresh_url: str) -> None:
    async with (
        await psycopg.AsyncConnection.connect(fresh_url, autocommit=True) as conn,
        CountingPool(fresh_url, min_size=1, max_size=2) as pool,
    ):
        issued = await create_key(conn, ["read", "write"])
        listener = Listener(fresh_url)
        access = Access(pool, listener)
        await access.load()
        async with running_task(access.keep_loaded()), listening(listener):
            CountingPool.taken = 0
            key = access.verify(issued.token)
            assert key is not None
            assert key.scopes == {"read", "write"}
            # Same id, another secret: the hash does not match.
            assert access.verify(issued.token[: -len(SECRET)] + SECRET) is None
            for _ in range(1000):
                assert access.verify(f"smsq_{secrets.token_hex(6)}_{SECRET}") is None
            assert CountingPool.taken == 0

            await revoke_key(conn, issued.key.id)

            async def revoked() -> bool:
                return access.verify(issued.token) is None

            await until(revoked, within=2)


@IN_MODULE_LOOP
async def test_options_needs_a_key_but_any_live_key_will_do(
    keyed: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    assert_problem(await keyed.options("/messages"), 401)
    answered = await keyed.options("/messages", headers=bearer(tokens["metrics"]))
    assert answered.status_code in (200, 204)
    assert "GET" in answered.headers["allow"]


@IN_MODULE_LOOP
async def test_answers_that_carry_message_data_are_stored_by_no_cache(
    keyed: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    every = bearer(tokens["all"])
    sent = await keyed.post(
        "/messages",
        json={"from": random_phone(), "to": "+447911123456", "message": "hi"},
        headers=every,
    )
    assert sent.status_code == 201
    message = sent.headers["location"]
    for path in (
        "/messages",
        message,
        f"{message}/media",
        f"{message}/events",
        "/events",
        "/audit/seals",
    ):
        answered = await keyed.get(path, headers=every)
        assert answered.status_code == 200, (path, answered.text)
        assert answered.headers["cache-control"] == "no-store", path
    assert sent.headers["cache-control"] == "no-store"
    assert "cache-control" not in (await keyed.get("/healthz")).headers


async def test_the_access_log_names_the_client_and_the_key_tried_on_a_401(
    fresh_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    made_up = f"smsq_abcdefabcdef_{SECRET}"
    async with running(create_app(Settings(database_url=fresh_url))) as app:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4242))
        async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as client:
            with caplog.at_level(logging.INFO, logger="smsq.access"):
                assert (await client.get("/messages", headers=bearer(made_up))).status_code == 401
    [line] = [r for r in caplog.records if r.name == "smsq.access"]
    assert line.__dict__["client"] == "203.0.113.9"
    assert line.__dict__["key_tried"] == "abcdefabcdef"
    assert "from 203.0.113.9" in line.getMessage()


async def test_a_reload_under_way_when_a_key_is_revoked_does_not_bring_it_back(
    fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    queried, release = asyncio.Event(), asyncio.Event()

    async def slow_live_keys(conn: psycopg.AsyncConnection[Any]) -> LiveKeys:
        found = await live_keys(conn)
        queried.set()
        await release.wait()
        return found

    async with (
        await psycopg.AsyncConnection.connect(fresh_url, autocommit=True) as conn,
        AsyncConnectionPool(fresh_url, min_size=1, max_size=2) as pool,
    ):
        issued = await create_key(conn, ["read"])
        listener = Listener(fresh_url)
        access = Access(pool, listener)
        connected = asyncio.Event()
        listener.on_connect(connected.set)
        await access.load()
        monkeypatch.setattr("api.http.access.live_keys", slow_live_keys)
        async with listening(listener):
            await connected.wait()
            loading = asyncio.create_task(access.load())
            await queried.wait()  # the reload has read the key as live...
            await revoke_key(conn, issued.key.id)  # ...and the notification comes before it returns

            async def distrusted() -> bool:
                return access.verify(issued.token) is None

            await until(distrusted, within=2)
            release.set()
            await loading
            assert access.verify(issued.token) is None
