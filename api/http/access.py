"""Bearer keys with scopes, checked on every route by one app-level guard.

Each handler says what it needs in `opt`: `{"scope": "write" | "read" |
"audit" | "metrics"}` or `{"public": True}`. A handler that declares neither
is refused to every key (fail closed), except Litestar's automatic OPTIONS
handlers, which any live key may call. On a loopback address, while no key
has ever been made, the service is open to requests that carry no credential;
one that carries a credential has it checked all the same, so that a client
with a wrong key learns it on the first request, not when the first key is made.

Verified keys are remembered for `SMSQ_AUTH_CACHE_SECONDS`, so a busy client
costs one primary-key lookup per key per interval, not one per request; a
revoked key stops working within that interval.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from litestar.connection import ASGIConnection, Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from api.http.problems import PROBLEM_JSON, Problem
from api.runtime.keys import StoredKey, any_key_made, find_key, key_id_of

SCHEME = "bearer"
T = TypeVar("T")
# Not a key id (those are 12 hex digits): the name of the "any key made?" query.
_ANY_KEY = "any key made"
# Unknown ids are remembered too (so a flood of made-up keys cannot hammer the
# database), in a bounded map so that it cannot fill memory either.
_MAX_REMEMBERED = 10_000


class _Remembered:
    __slots__ = ("at", "key")

    def __init__(self, key: StoredKey | None, at: float) -> None:
        self.key = key
        self.at = at


class Access:
    """Who may do what: key lookups with a short memory, and the open-on-loopback rule."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        loopback: bool,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._loopback = loopback
        self._ttl = ttl
        self._clock = clock
        self._keys: OrderedDict[str, _Remembered] = OrderedDict()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._open: tuple[bool, float] | None = None

    async def is_open(self) -> bool:
        if not self._loopback:
            return False
        now = self._clock()
        if self._open is None or now - self._open[1] >= self._ttl:
            made = await self._once(_ANY_KEY, any_key_made)
            self._open = (not made, now)
        return self._open[0]

    async def verify(self, token: str) -> StoredKey | None:
        """The key this token is, if it is a live one."""
        key_id = key_id_of(token)
        if key_id is None:
            return None
        key = await self._lookup(key_id)
        return key if key is not None and key.matches(token) else None

    async def _lookup(self, key_id: str) -> StoredKey | None:
        now = self._clock()
        remembered = self._keys.get(key_id)
        if remembered is not None and now - remembered.at < self._ttl:
            return remembered.key
        key: StoredKey | None = await self._once(key_id, lambda conn: find_key(conn, key_id))
        self._keys[key_id] = _Remembered(key, now)
        self._keys.move_to_end(key_id)
        while len(self._keys) > _MAX_REMEMBERED:
            self._keys.popitem(last=False)
        return key

    async def _once(self, name: str, query: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run `query`, shared by every request that asks for `name` meanwhile: many
        requests arriving as a remembered answer expires cost one query, not one each."""
        pending = self._pending.get(name)
        if pending is not None:
            return cast(T, await pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[name] = future
        try:
            async with self._pool.connection() as conn:
                result = await query(conn)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # marked as seen: waiters, if any, raise it themselves
            raise
        finally:
            del self._pending[name]
        future.set_result(result)
        return result


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


async def require_scope(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The app-level guard: 401 without a live key, 403 for one lacking the route's scope."""
    opt = handler.opt
    if opt.get("public"):
        return
    access: Access = connection.app.state.services.access
    credential = _credential(connection)
    if credential is None:
        if await access.is_open():
            return
        raise NotAuthorizedException(
            "this route needs Authorization: Bearer <key>", headers=_challenge()
        )
    token = _bearer(credential)
    if token is None:
        raise NotAuthorizedException(
            "this route takes Authorization: Bearer <key>, no other scheme",
            headers=_challenge(),
        )
    key = await access.verify(token)
    if key is None:
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
    connection.scope["state"]["actor"] = key.id


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
                **(handler.responses or {}),
            }
