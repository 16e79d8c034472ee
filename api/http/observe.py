"""Every request gets an id, a log line and a place in the HTTP metrics.

This wraps the whole application rather than being Litestar middleware:
middleware runs per route, after routing, and would never see the 404s and
405s of requests that match no route.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import uuid_utils
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.http.access import quota_headers
from api.http.context import ANONYMOUS
from api.http.process_metrics import ProcessMetrics

log = logging.getLogger("smsq.access")

# A client's own id is kept when it is short, visible ASCII: it ends up in
# headers, log lines and event metadata.
_SANE_ID = re.compile(rb"^[\x21-\x7e]{1,128}$")
UNMATCHED = "unmatched"


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _SANE_ID.match(value):
                return value.decode()
            break
    return str(uuid_utils.uuid7())


def _client(scope: Scope) -> str | None:
    """The peer's address as the server saw it (a proxy's, behind one)."""
    client = scope.get("client")
    return client[0] if client else None


def _key_quota(state: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """The key's RateLimit-* headers, for an answer that names no quota of its own
    (POST /messages names the tighter of the key's and the sender's itself)."""
    quota = state.pop("key_quota", None)
    if quota is None:
        return []
    return [(name.lower().encode(), value.encode()) for name, value in quota_headers(quota).items()]


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: ProcessMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state: dict[str, Any] = scope["state"]
        state["request_id"] = request_id
        echoed = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed, *_key_quota(state)]
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("path_template", UNMATCHED)
            method = scope["method"]
            self._metrics.observe(method, route, status, seconds)
            if log.isEnabledFor(logging.INFO):
                client = _client(scope)
                log.info(
                    "%s %s %d %.1f ms from %s",
                    method,
                    route,
                    status,
                    seconds * 1000,
                    client,
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "route": route,
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "actor": state.get("actor", ANONYMOUS),
                        "client": client,
                        **({"key_tried": state["key_tried"]} if "key_tried" in state else {}),
                    },
                )
