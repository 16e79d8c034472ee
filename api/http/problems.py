"""One place that turns errors into RFC 9457 problem details."""

from __future__ import annotations

import logging
from functools import lru_cache
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from litestar.types import ExceptionHandlersMap
from psycopg import OperationalError
from psycopg_pool import PoolTimeout

from commands.group_commit import Unavailable
from domain.errors import InvalidCommand, InvalidField

PROBLEM_JSON = "application/problem+json"
# A query may carry thousands of parameters; the answer names only the first few.
MAX_NAMED = 5

log = logging.getLogger(__name__)


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    phrase = HTTPStatus(status).phrase
    return Response(
        Problem(
            type=f"/problems/{slug}" if slug else "about:blank",
            title=phrase,
            status=status,
            detail=detail,
            errors=errors,
        ),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


class Refusal(Exception):
    """A request refused with a problem of its own status, type and detail."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.headers = headers


def invalid(errors: list[FieldError], *, unnamed: int = 0) -> Response[Problem]:
    """A 422 naming each bad field; `unnamed` counts more that are left out."""
    fields = ", ".join(e.field for e in errors)
    more = f" and {unnamed} more" if unnamed else ""
    return problem(422, f"invalid request: {fields}{more}", slug="validation", errors=errors)


INVALID_QUERY = {
    422: ResponseSpec(
        Problem,
        description="A query parameter is invalid, or not one this operation takes",
        media_type=PROBLEM_JSON,
        generate_examples=False,
    )
}


@lru_cache(maxsize=64)
def declared_query(handler: BaseRouteHandler) -> frozenset[str]:
    """The query parameters a handler declares with `QueryParameter` (or
    `FromQuery`), read from its signature once per handler, not per request."""
    return frozenset(
        field.kwarg_definition.name or name
        for name, field in handler.parsed_fn_signature.parameters.items()
        if isinstance(field.kwarg_definition, QueryParameter)
    )


async def refuse_unknown_query(request: Request[Any, Any, Any]) -> Response[Problem] | None:
    """422 for a query parameter the route does not take (a `before_request` hook).

    Ignored, a misspelt filter (`?stauts=stored`) would answer 200 with every
    item, as if the client had asked for no filter at all.
    """
    known = declared_query(request.route_handler)
    unknown = [name for name in dict.fromkeys(request.query_params) if name not in known]
    if not unknown:
        return None
    message = f"is not a query parameter here; known: {', '.join(sorted(known))}"
    errors = [FieldError(_shown(name), message) for name in unknown[:MAX_NAMED]]
    return invalid(errors, unnamed=len(unknown) - len(errors))


def _shown(name: str, limit: int = 100) -> str:
    return name if len(name) <= limit else name[:limit] + "…"


def shape_errors(body: bytes, shape: type[msgspec.Struct]) -> list[FieldError]:
    """Every way `body` fails to be a JSON object of `shape`, one error per field."""
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError as error:
        return [FieldError("body", f"is not valid JSON: {error}")]
    except RecursionError:
        return [FieldError("body", "is nested too deeply")]
    if not isinstance(value, dict):
        return [FieldError("body", "must be a JSON object")]
    errors = []
    fields = msgspec.structs.fields(shape)
    for field in fields:
        if field.encode_name not in value:
            errors.append(FieldError(field.encode_name, "is required"))
            continue
        try:
            msgspec.convert(value[field.encode_name], field.type)
        except msgspec.ValidationError as error:
            errors.append(FieldError(field.encode_name, str(error).split(" - at ")[0]))
    known = {f.encode_name for f in fields}
    errors += [FieldError(str(k), "is not an allowed field") for k in value if k not in known]
    return errors


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Problem]:
    details = exc.extra if isinstance(exc.extra, list) else []
    errors = [
        FieldError(str(d.get("key") or "body"), str(d.get("message", exc.detail)))
        for d in details
        if isinstance(d, dict)
    ]
    return invalid(errors or [FieldError("body", exc.detail)])


def _invalid_command(_: Request[Any, Any, Any], exc: InvalidCommand) -> Response[Problem]:
    return invalid([FieldError(e.field, e.message) for e in exc.errors])


def _invalid_field(_: Request[Any, Any, Any], exc: InvalidField) -> Response[Problem]:
    return invalid([FieldError(exc.field, exc.message)])


def _refusal(_: Request[Any, Any, Any], exc: Refusal) -> Response[Problem]:
    return problem(exc.status, exc.detail, slug=exc.slug, headers=exc.headers)


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    detail = (
        exc.detail if exc.detail != HTTPStatus(status).phrase else HTTPStatus(status).description
    )
    return problem(status, detail, headers=exc.headers)


def _unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.warning("database unavailable: %s", exc)
    return problem(
        503,
        "the database is unavailable; try again shortly",
        slug="unavailable",
        headers={"Retry-After": "1"},
    )


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "an unexpected error occurred; it has been logged")


exception_handlers: ExceptionHandlersMap = {
    ValidationException: _validation,
    InvalidCommand: _invalid_command,
    InvalidField: _invalid_field,
    Refusal: _refusal,
    HTTPException: _http,
    Unavailable: _unavailable,
    PoolTimeout: _unavailable,
    OperationalError: _unavailable,
    Exception: _internal,
}
