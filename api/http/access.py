"""Bearer keys with scopes, checked on every route by one app-level guard.

Each handler says what it needs in `opt`: `{"scope": "write" | "read" |
"audit" | "metrics"}` or `{"public": True}`. A handler that declares neither
is refused to every key (fail closed), except Litestar's automatic OPTIONS
handlers, which any live key may call.

Anonymous requests are served only while no key has ever been made, and then
only from the machine itself: a loopback peer, with no proxy header. That is a
property of the connection, so it holds behind a same-host proxy, beside a
sidecar or under any ASGI server. A request that carries a credential has it
checked all the same, so that a client with a wrong key learns it on the first
request, not when the first key is made.

The live keys are held in memory by each process: loaded at start, and again
whenever a key is made or revoked (`smsq keys` notifies in the transaction that
changes it) or the listening connection is remade. A token, known or not, is
checked without a database query, and a revoked key is refused the moment its
notification arrives.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from litestar.connection import ASGIConnection, Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins import ReceiveRoutePlugin
from litestar.response import Response
from litestar.routes import BaseRoute, HTTPRoute
from litestar.types import Scope
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api.http.context import actor_of
from api.http.problems import PROBLEM_JSON, Problem, Refusal, problem
from api.runtime.keys import CHANNEL, LiveKeys, StoredKey, digest, key_id_of, live_keys
from domain import key_limits
from domain.key_limits import Bucket, OverKeyRate, UseKey
from domain.sender import Quota
from projections.listener import Listener

SCHEME = "bearer"
MAKE_A_KEY = "make one with `smsq keys create --scopes read,write`"
# Headers a proxy adds: a request bearing one came through it, whatever its peer.
PROXY_HEADERS = frozenset({b"forwarded", b"x-forwarded-for", b"x-real-ip"})
RELOAD_PAUSE = 1.0
# Compared with the token of an unknown key id, so that it costs what a known one does.
_NOBODY = digest("")
# The buckets' clock: monotonic, as a datetime (the decider takes time as one).
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)

log = logging.getLogger(__name__)


def monotonic_now() -> datetime:
    return _ORIGIN + timedelta(seconds=time.monotonic())


class Access:
    """The live keys of this process, the open-to-this-machine rule, and each key's bucket."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        listener: Listener,
        *,
        clock: Callable[[], datetime] = monotonic_now,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._keys: LiveKeys | None = None
        self._stale = asyncio.Event()
        # Keys changed while a load was under way: that load may hold them as they were.
        self._doubted: set[str] = set()
        self._buckets: dict[str, Bucket | None] = {}
        listener.subscribe(CHANNEL, self._changed)
        # Whatever was notified while the listener was away is lost: load afresh.
        listener.on_connect(self._stale.set)

    def _changed(self, key_id: str) -> None:
        """A key was made or revoked: distrust it at once, and load the keys again."""
        if self._keys is not None:
            by_id = {k: v for k, v in self._keys.by_id.items() if k != key_id}
            self._keys = LiveKeys(by_id, any_made=True)
        self._doubted.add(key_id)
        self._buckets.pop(key_id, None)
        self._stale.set()

    async def load(self) -> None:
        doubted, self._doubted = self._doubted, set()
        try:
            async with self._pool.connection() as conn:
                loaded = await live_keys(conn)
        except BaseException:
            self._doubted |= doubted
            raise
        by_id = {k: v for k, v in loaded.by_id.items() if k not in self._doubted}
        made = loaded.any_made or (self._keys is not None and self._keys.any_made)
        self._keys = LiveKeys(by_id, any_made=made)

    async def keep_loaded(self) -> None:
        """Load the keys whenever told to, until cancelled."""
        while True:
            await self._stale.wait()
            self._stale.clear()
            try:
                await self.load()
            except (psycopg.Error, PoolTimeout) as error:
                log.warning("API keys not reloaded: %s; trying again", error)
                self._stale.set()
                await asyncio.sleep(RELOAD_PAUSE)

    def _live(self) -> LiveKeys:
        if self._keys is None:
            raise Refusal(
                503,
                "the API keys are not loaded yet; try again shortly",
                slug="unavailable",
                headers={"Retry-After": "1"},
            )
        return self._keys

    def is_open(self, scope: Scope) -> bool:
        """Whether a request without a key may be served: no key was ever made and it
        comes from this machine, not through a proxy."""
        return not self._live().any_made and from_this_machine(scope)

    def verify(self, token: str) -> StoredKey | None:
        """The key this token is, if it is a live one."""
        key_id = key_id_of(token)
        if key_id is None:
            return None
        key = self._live().by_id.get(key_id)
        if key is None:
            hmac.compare_digest(_NOBODY, digest(token))
            return None
        return key if key.matches(token) else None

    def use(self, key: StoredKey) -> Quota | OverKeyRate | None:
        """Take a request from the key's bucket: what it has left, or why not;
        None for a key without a rate of its own."""
        if key.rate is None:
            return None
        now = self._clock()
        bucket = self._buckets.get(key.id)
        decision = key_limits.decide(UseKey(key.rate), bucket, now)
        if isinstance(decision, OverKeyRate):
            return decision
        for event in decision:
            bucket = key_limits.evolve(bucket, event)
        self._buckets[key.id] = bucket
        return key_limits.quota(bucket, key.rate, now)


def from_this_machine(scope: Scope) -> bool:
    """The peer is a loopback address and no proxy header says the request came
    from elsewhere."""
    client = scope.get("client")
    if not client or not _loopback(client[0]):
        return False
    return not any(name in PROXY_HEADERS for name, _ in scope["headers"])


@functools.lru_cache(maxsize=1024)
def _loopback(host: str) -> bool:
    """Whether a peer's address is a loopback one. Asked only while no key
    exists, for every request: remembered, parsing costs more than the rest."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _credential(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """The Authorization header's value, if the request has one."""
    # Read from the raw headers: building the parsed header map costs more
    # than the whole check on a request that has not needed it yet.
    for name, value in connection.scope["headers"]:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


def _bearer(credential: str) -> str | None:
    scheme, _, token = credential.partition(" ")
    return token.strip() if scheme.lower() == SCHEME else None


def _asks_options(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return isinstance(connection, Request) and connection.method == "OPTIONS"


def _challenge(error: str | None = None, scope: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="smsq"'
    if error:
        value += f', error="{error}"'
    if scope:
        value += f', scope="{scope}"'
    return {"WWW-Authenticate": value}


def quota_headers(quota: Quota) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(quota.limit),
        "RateLimit-Remaining": str(quota.remaining),
        "RateLimit-Reset": str(quota.reset_after),
    }


# Async though it awaits nothing: Litestar runs a synchronous guard in a thread.
async def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The app-level guard: 401 without a live key, 403 for one lacking the route's
    scope, 429 for one past its rate."""
    opt = handler.opt
    if opt.get("public"):
        return
    access: Access = connection.app.state.services.access
    credential = _credential(connection)
    if credential is None:
        if access.is_open(connection.scope):
            return
        raise NotAuthorizedException(
            "this route needs Authorization: Bearer <key>; without one, the service answers"
            f" only requests from its own machine, and only until a key exists: {MAKE_A_KEY}",
            headers=_challenge(),
        )
    token = _bearer(credential)
    if token is None:
        raise NotAuthorizedException(
            "this route takes Authorization: Bearer <key>, no other scheme",
            headers=_challenge(),
        )
    state = connection.scope["state"]
    key = access.verify(token)
    if key is None:
        state["key_tried"] = key_id_of(token)
        raise NotAuthorizedException(
            "the key is unknown or revoked", headers=_challenge("invalid_token")
        )
    scope = opt.get("scope")
    # Litestar's automatic OPTIONS handlers only list a path's methods: any live key may ask.
    if scope not in key.scopes and not _asks_options(connection):
        raise PermissionDeniedException(
            f"key {key.id} lacks the {scope!r} scope" if scope else "this route admits no key",
            headers=_challenge("insufficient_scope", scope),
        )
    state["actor"] = key.id
    state["senders"] = key.senders
    used = access.use(key)
    if isinstance(used, OverKeyRate):
        raise Refusal(
            429,
            f"key {key.id} has used its {used.quota.limit} requests; retry in {used.retry_after} s",
            slug="key-rate-limited",
            headers=quota_headers(used.quota) | {"Retry-After": str(used.retry_after)},
        )
    if used is not None:
        state["key_quota"] = used


def sender_refused(request: Request[Any, Any, Any], sender: str) -> Response[Any] | None:
    """403 when the request's key may not send from `sender` (a key made with `--senders`)."""
    senders: frozenset[str] = request.scope["state"].get("senders", frozenset())
    refused = key_limits.check_sender(senders, sender)
    if refused is None:
        return None
    return problem(
        403,
        f"key {actor_of(request)} may not send from {refused.sender}",
        slug="sender-not-allowed",
        headers=_challenge("insufficient_scope"),
    )


class DeclareSecurity(ReceiveRoutePlugin):
    """Writes each route's scope into the OpenAPI document, with its 401 and 403."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            scope = handler.opt.get("scope")
            if not scope:
                continue
            handler.security = [{SCHEME: [scope]}]
            handler.responses = {
                401: ResponseSpec(
                    Problem,
                    description="No key, or an unknown or revoked one",
                    media_type=PROBLEM_JSON,
                    generate_examples=False,
                ),
                403: ResponseSpec(
                    Problem,
                    description=f"The key lacks the {scope!r} scope",
                    media_type=PROBLEM_JSON,
                    generate_examples=False,
                ),
                429: ResponseSpec(
                    Problem,
                    description="The key has used its request rate (`smsq keys create --rate`)",
                    media_type=PROBLEM_JSON,
                    generate_examples=False,
                ),
                **(handler.responses or {}),
            }
