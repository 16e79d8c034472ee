"""Bearer keys with scopes, checked on every route by one app-level guard.

Each handler says what it needs in `opt`: `{"scope": "write" | "read" |
"audit" | "metrics"}` or `{"public": True}`. A handler that declares neither
is refused to every key (fail closed), except Litestar's automatic OPTIONS
handlers, which any live key may call. On a loopback address, while no key
has ever been made, the service is open.

Verified keys are remembered for `SMSQ_AUTH_CACHE_SECONDS`, so a busy client
costs one primary-key lookup per key per interval, not one per request; a
revoked key stops working within that interval.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection, Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from psycopg_pool import AsyncConnectionPool

from api.keys import StoredKey, any_key_made, find_key, key_id_of
from api.problems import PROBLEM_JSON, Problem

SCHEME = "bearer"
# Unknown ids are remembered too (so a flood of made-up keys cannot hammer the
# database), in a bounded map so that it cannot fill memory either.
_MAX_REMEMBERED = 10_000


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        self._lookups: dict[str, asyncio.Future[StoredKey | None]] = {}
        self._open: tuple[bool, float] | None = None

    async def is_open(self) -> bool:
        if not self._loopback:
            return False
        now = self._clock()
        if self._open is None or now - self._open[1] >= self._ttl:
            async with self._pool.connection() as conn:
                self._open = (not await any_key_made(conn), now)
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
        # Many requests with the same key arriving as its entry expires share one query.
        pending = self._lookups.get(key_id)
        if pending is not None:
            return await pending
        future: asyncio.Future[StoredKey | None] = asyncio.get_running_loop().create_future()
        self._lookups[key_id] = future
        try:
            async with self._pool.connection() as conn:
                key = await find_key(conn, key_id)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # marked as seen: waiters, if any, raise it themselves
            raise
        finally:
            del self._lookups[key_id]
        future.set_result(key)
        self._keys[key_id] = _Remembered(key, now)
        self._keys.move_to_end(key_id)
        while len(self._keys) > _MAX_REMEMBERED:
            self._keys.popitem(last=False)
        return key


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    # Read from the raw headers: building the parsed header map costs more
    # than the whole check on a request that has not needed it yet.
    for name, value in connection.scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == SCHEME else None
    return None


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
    if await access.is_open():
        return
    token = _bearer(connection)
    if token is None:
        raise NotAuthorizedException(
            "this route needs Authorization: Bearer <key>", headers=_challenge()
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
