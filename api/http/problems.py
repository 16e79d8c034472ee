"""One place that turns errors into RFC 9457 problem details."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from enum import Enum
from functools import lru_cache
from http import HTTPStatus
from typing import Annotated, Any, get_args, get_origin

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from litestar.types import ExceptionHandler, ExceptionHandlersMap
from psycopg import OperationalError
from psycopg_pool import PoolTimeout

from commands.group_commit import Unavailable
from domain.errors import InvalidCommand, InvalidField
from media.store import StoreUnavailable

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


def refusals(reasons: dict[int, str]) -> dict[int, ResponseSpec]:
    """The error answers an operation can give, each a problem, for its `responses`."""
    return {
        status: ResponseSpec(
            Problem, description=reason, media_type=PROBLEM_JSON, generate_examples=False
        )
        for status, reason in reasons.items()
    }


# The largest integer PostgreSQL holds. Litestar writes a bound as a float, which
# rounds this one up to 2**63: the document states it exactly instead.
BIGINT = 2**63 - 1
EXACT_BIGINT = {"maximum": BIGINT}

# Answers any operation that reads the database can give.
UNAVAILABLE = {503: "The database is unavailable; `Retry-After` says when to try again"}
STORE_UNAVAILABLE = {
    503: "The database or the media store is unavailable; `Retry-After` says when to try again"
}
# Answers any operation with parameters can give (Litestar's own, made a problem).
MALFORMED = {400: "The request is malformed"}


class DeclaredQuery(msgspec.Struct, frozen=True):
    names: frozenset[str]
    choices: dict[str, frozenset[str]]
    """For a parameter that takes one of a set of values (an enum), those values."""


@lru_cache(maxsize=64)
def declared_query(handler: BaseRouteHandler) -> DeclaredQuery:
    """The query parameters a handler declares with `QueryParameter` (or
    `FromQuery`), read from its signature once per handler, not per request."""
    names, choices = set(), {}
    for name, field in handler.parsed_fn_signature.parameters.items():
        if not isinstance(field.kwarg_definition, QueryParameter):
            continue
        name = field.kwarg_definition.name or name
        names.add(name)
        enum = next(
            (t for t in (field.annotation, *get_args(field.annotation)) if _is_enum(t)), None
        )
        if enum is not None:
            choices[name] = frozenset(str(member.value) for member in enum)
    return DeclaredQuery(frozenset(names), choices)


def _is_enum(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Enum)


async def refuse_unknown_query(request: Request[Any, Any, Any]) -> Response[Problem] | None:
    """422 for a query parameter the route does not take, one given more than once,
    or a value outside a parameter's choices (a `before_request` hook).

    Ignored, a misspelt filter (`?stauts=stored`) would answer 200 with every
    item, as if the client had asked for no filter at all; of a repeated one
    only the last would count; and the decoder reads the word `null` as "no
    filter" for a parameter that may be left out (leaving it out says that).
    """
    params = request.query_params
    # In the order the client gave them (the multidict's own items come grouped).
    pairs = [(name, value) for name in dict.fromkeys(params) for value in params.getall(name)]
    return refused_query(pairs, declared_query(request.route_handler))


def refused_query(
    pairs: Iterable[tuple[str, str]], query: DeclaredQuery
) -> Response[Problem] | None:
    """`refuse_unknown_query`'s rules, for the query's (name, value) `pairs`."""
    given: dict[str, list[str]] = {}
    for name, value in pairs:
        given.setdefault(name, []).append(value)
    errors: list[FieldError] = []
    more = 0
    for name, values in given.items():
        if name not in query.names:
            message = f"is not a query parameter here; known: {', '.join(sorted(query.names))}"
        elif len(values) > 1:
            message = f"is given {len(values)} times; give it once"
        elif name in query.choices and values[0] not in query.choices[name]:
            message = f"must be one of {', '.join(sorted(query.choices[name]))}"
        else:
            continue
        if len(errors) < MAX_NAMED:
            errors.append(FieldError(_shown(name), message))
        else:
            more += 1
    return invalid(errors, unnamed=more) if errors else None


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
            # The type alone: the constraints a shape declares for its document are
            # the domain's to check, with the domain's words.
            msgspec.convert(value[field.encode_name], _bare(field.type))
        except msgspec.ValidationError as error:
            errors.append(FieldError(field.encode_name, str(error).split(" - at ")[0]))
    known = {f.encode_name for f in fields}
    errors += [FieldError(str(k), "is not an allowed field") for k in value if k not in known]
    return errors


def _bare(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


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


# Litestar's own refusals that the service also gives, with the service's types.
_SLUGS = {408: "timeout", 413: "too-large"}


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    detail = (
        exc.detail if exc.detail != HTTPStatus(status).phrase else HTTPStatus(status).description
    )
    return problem(status, detail, slug=_SLUGS.get(status), headers=exc.headers)


def _unavailable(what: str) -> ExceptionHandler[Exception]:
    """503 with `Retry-After` for a failure of `what` (the database, the media store)."""

    def handler(_: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
        log.warning("%s unavailable: %s", what, exc)
        return problem(
            503,
            f"the {what} is unavailable; try again shortly",
            slug="unavailable",
            headers={"Retry-After": "1"},
        )

    return handler


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "an unexpected error occurred; it has been logged")


exception_handlers: ExceptionHandlersMap = {
    ValidationException: _validation,
    InvalidCommand: _invalid_command,
    InvalidField: _invalid_field,
    Refusal: _refusal,
    HTTPException: _http,
    Unavailable: _unavailable("database"),
    PoolTimeout: _unavailable("database"),
    OperationalError: _unavailable("database"),
    StoreUnavailable: _unavailable("media store"),
    Exception: _internal,
}
