"""What the OpenAPI document says beyond what Litestar reads from the handlers.

Litestar builds each operation from its handler's signature and `responses`;
it has no place there for the headers of an error response, for a 200 that
repeats a 201's headers, or for links between operations. `Documented`, the
operation class of every route (set by `DeclareContract`), adds them, so that
a client generated from the document knows every status, body and header the
service can answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from litestar import Request, Response
from litestar.datastructures import CacheControlHeader
from litestar.openapi.spec import (
    Link,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from api.http.problems import PROBLEM_JSON

_SECONDS = Schema(type=OpenAPIType.STRING, pattern=r"^[0-9]+$")
_CHALLENGE = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING, pattern=r"^Bearer realm=\"smsq\""),
    description="The bearer challenge (RFC 6750): `error` and `scope` say what was wrong.",
    required=True,
)
_RETRY_AFTER = "Retry-After"
QUOTA = {
    "RateLimit-Limit": "Of the sender's limit (messages stored in any 60-second window) and"
    " the key's (requests at once, refilled at its rate), the tighter: requests allowed.",
    "RateLimit-Remaining": "Of those, how many are left now.",
    "RateLimit-Reset": "Seconds until the sender's oldest message leaves the window, or"
    " until the key's bucket is full again.",
}
# Answers that carry message data are kept by no cache, shared or private.
NO_STORE = CacheControlHeader(no_store=True)

# Error answers carry these headers whatever the operation.
_ERROR_HEADERS: dict[str, dict[str, OpenAPIHeader]] = {
    "401": {"WWW-Authenticate": _CHALLENGE},
    "403": {"WWW-Authenticate": _CHALLENGE},
    "429": {
        _RETRY_AFTER: OpenAPIHeader(
            schema=_SECONDS, description="Whole seconds until a request may succeed.", required=True
        ),
        **{
            name: OpenAPIHeader(schema=_SECONDS, description=description, required=True)
            for name, description in QUOTA.items()
        },
    },
    "503": {
        # Absent only from /readyz, whose 503 says "not ready", not "come back in 1 s".
        _RETRY_AFTER: OpenAPIHeader(schema=_SECONDS, description="Seconds to wait before retrying.")
    },
}

# Header schemas for success headers that Litestar declares without one.
_HEADER_SCHEMAS = {
    "Location": Schema(type=OpenAPIType.STRING, pattern=r"^/"),
    "Consistency-Token": Schema(type=OpenAPIType.STRING, pattern=r"^[0-9]{1,19}\.[0-9]{1,19}$"),
    **dict.fromkeys(QUOTA, _SECONDS),
}

_PROBLEM = {PROBLEM_JSON: OpenAPIMediaType(schema=Reference("#/components/schemas/Problem"))}


@dataclass
class Documented(Operation):
    """An operation whose every response says its headers, and whose every error is
    an RFC 9457 problem (Litestar's own 400 says `application/json` otherwise)."""

    # Follow-up operations a response leads to, by status: what stateful clients
    # (and fuzzers) use to reach a message that exists rather than a made-up id.
    links: ClassVar[dict[str, dict[str, Link | Reference]]] = {}

    def __post_init__(self) -> None:
        responses: dict[str, Any] = dict(self.responses or {})
        for status, response in responses.items():
            if not isinstance(response, OpenAPIResponse):
                continue
            if int(status) >= 400:
                response.content = _PROBLEM
                response.headers = {**(response.headers or {}), **_ERROR_HEADERS.get(status, {})}
            for name, header in (response.headers or {}).items():
                if isinstance(header, OpenAPIHeader) and header.schema is None:
                    header.schema = _HEADER_SCHEMAS.get(name, Schema(type=OpenAPIType.STRING))
            if status in self.links:
                response.links = self.links[status]
        # A 200 beside a 201 (a duplicate, or images attached already) answers the
        # same headers as the 201 does.
        created, ok = responses.get("201"), responses.get("200")
        if isinstance(created, OpenAPIResponse) and isinstance(ok, OpenAPIResponse):
            ok.headers = {**(created.headers or {}), **(ok.headers or {})}
            if "201" in self.links:
                ok.links = self.links["201"]
        self.responses = responses


class DeclareContract(ReceiveRoutePlugin):
    """Gives every route that has not chosen its own the `Documented` operation class."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            if not issubclass(handler.operation_class, Documented):
                handler.operation_class = Documented


async def answer_options(request: Request[Any, Any, Any]) -> Response[None] | None:
    """OPTIONS: `Allow` lists every method of the path (an app-level `before_request`).

    Litestar makes the OPTIONS handler with the first route of a path and lists
    that route's methods only; a path whose handlers come from two places (a
    controller's GET and POST, say) would answer an `Allow` missing some.
    """
    if request.method != "OPTIONS":
        return None
    routes = request.app.route_handler_method_map
    methods = {m for path in request.route_handler.paths for m in routes.get(path, ())}
    return Response(
        None,
        status_code=204,
        headers={"Allow": ", ".join(sorted(methods))},
        media_type="text/plain",
    )
