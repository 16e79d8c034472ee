"""POST /messages, GET /messages and GET /messages/{id}."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Link, Reference
from litestar.params import Body, FromPath, HeaderParameter, QueryParameter
from uuid_utils.compat import uuid7

from api.http.access import quota_headers, sender_refused
from api.http.consistency import (
    CONSISTENCY,
    HEADER,
    WRITTEN,
    ConsistencyToken,
    await_model,
    place_of,
    token_of,
)
from api.http.context import actor_of, request_metadata
from api.http.openapi import NO_STORE, QUOTA, Documented
from api.http.problems import (
    BIGINT,
    EXACT_BIGINT,
    MALFORMED,
    UNAVAILABLE,
    FieldError,
    Problem,
    invalid,
    problem,
    refusals,
    refuse_unknown_query,
    shape_errors,
)
from api.http.schemas import Message, MessagePage, SendSms
from api.http.services import Services
from commands.event_store import Place, read_stream
from commands.receive_sms import IdempotencyKey, KeyReuse, NewMessage, ReceiveRequest, Replay
from domain.commands import ReceiveSms
from domain.errors import InvalidCommand
from domain.events import SmsReceived, stream_of
from domain.key_limits import tighter
from domain.message import Status, fold
from domain.phone import PhoneNumber
from domain.sender import Duplicate, OverRateLimit, Quota
from projections.messages import TABLE as MESSAGES
from projections.messages import get_message, list_messages


async def require_json_message(request: Request[Any, Any, Any]) -> Response[Problem] | None:
    """Refuse a wrong Content-Type (415) or a body not shaped as SendSms (422).

    Checked here rather than left to the body decoder so that every bad field
    is reported, not only the first one the decoder meets.
    """
    media_type = request.content_type[0]
    if media_type != "application/json" and not media_type.endswith("+json"):
        shown = media_type or "none"
        return problem(
            415, f"Content-Type must be application/json, not {shown}", slug="media-type"
        )
    limit = request.app.state.services.settings.body_timeout
    try:
        # A client that stops sending mid-body must not hold a request forever.
        async with asyncio.timeout(limit):
            body = await request.body()
    except TimeoutError:
        return problem(408, f"the body did not arrive within {limit} s", slug="timeout")
    try:
        msgspec.json.decode(body, type=SendSms)
    except (msgspec.MsgspecError, RecursionError):
        return invalid(shape_errors(body, SendSms) or _field_errors(body))
    return None


def _field_errors(body: bytes) -> list[FieldError]:
    """Why a body of the right shape fails SendSms's declared constraints, in the
    domain's words and for every field (the decoder names only the first)."""
    value = msgspec.json.decode(body)
    try:
        ReceiveSms.create(UUID(int=0), value["from"], value["to"], value["message"])
    except InvalidCommand as error:
        return [FieldError(e.field, e.message) for e in error.errors]
    return [FieldError("body", "does not match the declared schema")]


def _limits(sender: Quota, key: Quota | None) -> dict[str, str]:
    """The RateLimit-* headers of the tighter of the sender's quota and the key's."""
    return quota_headers(sender if key is None else tighter(sender, key))


class Found(msgspec.Struct, frozen=True):
    message: Message
    place: Place
    """The place of the message's last event that the answer includes."""


async def load_message(services: Services, message_id: UUID) -> Found | None:
    """From the read model when it has folded every event of the message; else
    from the stream, so an answer is never older than the log it was read from
    (a message answers 200 the moment its 201 was sent, and its status never
    goes back)."""
    async with services.pool.connection() as conn:
        view = await get_message(conn, message_id)
    if view is None:
        return None
    if view.row is not None:
        return Found(Message.from_row(view.row), view.place)
    state = fold(r.decode() for r in view.stream)
    assert state is not None
    return Found(Message.from_state(state, stored=view.stored), view.place)


def _next_page(filters: dict[str, str | None], limit: int, offset: int) -> str:
    """The next page's URL. The filters' values are E.164 numbers and status
    names, whose only character a query must escape is the number's `+`."""
    given = "".join(f"{k}={v.replace('+', '%2B')}&" for k, v in filters.items() if v is not None)
    return f"/messages?{given}limit={limit}&offset={offset + limit}"


def phone_filter(raw: str | None, field: str) -> str | None:
    if raw is None:
        return None
    # An unescaped "+" in a query string arrives as a space.
    if raw.startswith(" "):
        raw = "+" + raw[1:]
    return PhoneNumber.parse(raw, field).e164


async def _existing(services: Services, message_id: UUID) -> Found:
    found = await load_message(services, message_id)
    if found is None:
        raise NotFoundException(f"no message {message_id}")
    return found


async def _first_response(services: Services, message_id: UUID) -> Found:
    """The body of the 201 that created the message, rebuilt from its first event."""
    async with services.pool.connection() as conn:
        recorded = await read_stream(conn, stream_of(message_id))
    first = recorded[0].decode()
    assert isinstance(first, SmsReceived)
    return Found(Message.received(first), recorded[0].place)


async def _replay(services: Services, outcome: Replay) -> Response[Message]:
    new = outcome.came == "new"
    found = (
        await _first_response(services, outcome.message_id)
        if new
        else await _existing(services, outcome.message_id)
    )
    # The quota headers as the first answer sent them, Reset included: a replay
    # repeats that answer; it does not take or report the quota anew.
    quota = {} if outcome.quota is None else quota_headers(outcome.quota)
    headers = quota | {
        "Location": f"/messages/{outcome.message_id}",
        "Idempotent-Replayed": "true",
        HEADER: token_of(found.place),
    }
    return Response(found.message, status_code=201 if new else 200, headers=headers)


IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        min_length=1,
        max_length=255,
        # Printable ASCII; HTTP drops spaces at either end, so it starts and ends visible.
        pattern=r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$",
        description="Replays the first response for a retried request with the same body.",
        # Left out, it is absent: the word `null` would be a key.
        schema_extra={"one_of": None, "type": "string"},
    ),
]

# Stated in the document only (`schema_extra`): the service checks a number itself,
# and says what is wrong with it in its own words.
_PHONE_FILTER = {
    "one_of": None,
    "type": "string",
    "pattern": r"^[+ ][1-9][0-9]{1,14}$",
    "format": "e164",
    "examples": ["+14155550100"],
}
_PHONE_MEANS = "E.164 (an unescaped `+`, which arrives as a space, is read as `+`)"
StatusFilter = Annotated[
    Status | None,
    QueryParameter(
        schema_extra={"one_of": None, "type": "string", "enum": [s.value for s in Status]}
    ),
]

_NEW_MESSAGE: dict[str, dict[str, Link | Reference]] = {
    # What a client does next with a message it sent: read it, its images, its events.
    "201": {
        name: Link(operation_id=operation, parameters={"message_id": "$response.body#/id"})
        for name, operation in (
            ("GetMessage", "MessagesMessageIdGetOne"),
            ("ListMedia", "MessagesMessageIdMediaListMedia"),
            ("AttachMedia", "MessagesMessageIdMediaAttach"),
            ("MessageEvents", "MessagesMessageIdEventsStream"),
        )
    }
}


class ReceiveOperation(Documented):
    links = _NEW_MESSAGE


_SENT = [
    ResponseHeader(
        name="Location", description="The message's URL.", documentation_only=True, required=True
    ),
    *(
        ResponseHeader(name=name, description=description, documentation_only=True)
        for name, description in QUOTA.items()
    ),
]


class MessagesController(Controller):
    path = "/messages"
    tags = ("messages",)
    cache_control = NO_STORE

    @post(
        "/",
        status_code=201,
        opt={"scope": "write"},
        before_request=require_json_message,
        summary="Send an SMS",
        operation_class=ReceiveOperation,
        responses={
            200: ResponseSpec(
                Message, description="A duplicate of a message sent less than 2 s earlier: that one"
            ),
            **refusals(
                MALFORMED
                | {
                    403: "The key lacks the 'write' scope, or may not send from this `from`",
                    408: "The body did not arrive within SMSQ_BODY_TIMEOUT seconds",
                    413: "The body is too large",
                    415: "The Content-Type is not JSON",
                    422: "A field is missing, extra or invalid (each is named), or the"
                    " Idempotency-Key was used with another body",
                    429: "The sender has stored 5 messages in the last 60 seconds, or the key"
                    " has used its request rate; `RateLimit-*` name the tighter limit",
                }
                | UNAVAILABLE
            ),
        },
        response_headers=[*_SENT, *WRITTEN],
    )
    async def receive(
        self,
        # Unknown fields are refused (422): the document says so.
        data: Annotated[
            SendSms,
            Body(
                media_type=RequestEncodingType.JSON, schema_extra={"additional_properties": False}
            ),
        ],
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Message]:
        command = ReceiveSms.create(uuid7(), data.from_, data.to, data.message)
        # This answer names the key's quota itself (the access log's observer
        # would add it to answers that do not).
        key_quota: Quota | None = request.scope["state"].pop("key_quota", None)
        refused = sender_refused(request, command.from_.e164)
        if refused is not None:
            return refused
        key = None
        if idempotency_key is not None:
            digest = hashlib.sha256(
                msgspec.json.encode([command.from_.e164, command.to.e164, command.message])
            ).digest()
            key = IdempotencyKey(actor_of(request), idempotency_key, digest)
        outcome = await services.receive.submit(
            ReceiveRequest(command, request_metadata(request), key)
        )

        if isinstance(outcome, NewMessage):
            event = outcome.event
            headers = _limits(outcome.quota, key_quota) | {
                "Location": f"/messages/{event.message_id}",
                HEADER: token_of(outcome.place),
            }
            return Response(Message.received(event), status_code=201, headers=headers)
        if isinstance(outcome, Duplicate):
            services.metrics.duplicates.inc()
            original = await _existing(services, outcome.original)
            headers = _limits(outcome.quota, key_quota) | {
                "Location": f"/messages/{original.message.id}",
                HEADER: token_of(original.place),
            }
            return Response(original.message, status_code=200, headers=headers)
        if isinstance(outcome, OverRateLimit):
            services.metrics.rate_limited.inc()
            return problem(
                429,
                f"{command.from_.e164} has sent {outcome.quota.limit} messages in the last "
                f"60 seconds; retry in {outcome.retry_after} s",
                slug="rate-limited",
                headers=_limits(outcome.quota, key_quota)
                | {"Retry-After": str(outcome.retry_after)},
            )
        if isinstance(outcome, Replay):
            return await _replay(services, outcome)
        assert isinstance(outcome, KeyReuse)
        return problem(
            422,
            f"Idempotency-Key {outcome.key!r} was already used with a different body",
            slug="idempotency-key-reused",
        )

    @get(
        "/",
        summary="Messages, newest first",
        opt={"scope": "read"},
        before_request=refuse_unknown_query,
        responses=refusals(
            MALFORMED
            | {
                422: "A query parameter is invalid, given twice, or not one this operation"
                " takes; or the Consistency-Token is not one this service gave"
            }
            | CONSISTENCY
        ),
    )
    async def list_all(
        self,
        services: NamedDependency[Services],
        from_: Annotated[
            str | None,
            QueryParameter(name="from", description=_PHONE_MEANS, schema_extra=_PHONE_FILTER),
        ] = None,
        to: Annotated[
            str | None, QueryParameter(description=_PHONE_MEANS, schema_extra=_PHONE_FILTER)
        ] = None,
        status: StatusFilter = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
        offset: Annotated[int, QueryParameter(ge=0, le=BIGINT, schema_extra=EXACT_BIGINT)] = 0,
        consistency_token: ConsistencyToken = None,
    ) -> MessagePage:
        await await_model(services, consistency_token, MESSAGES)
        filters = {
            "from": phone_filter(from_, "from"),
            "to": phone_filter(to, "to"),
            "status": status.value if status else None,
        }
        async with services.pool.connection() as conn:
            rows = await list_messages(
                conn,
                from_=filters["from"],
                to=filters["to"],
                status=filters["status"],
                limit=limit + 1,
                offset=offset,
            )
        return MessagePage(
            items=[Message.from_row(r) for r in rows[:limit]],
            limit=limit,
            offset=offset,
            next=_next_page(filters, limit, offset) if len(rows) > limit else None,
        )

    @get(
        "/{message_id:uuid}",
        summary="One message",
        opt={"scope": "read"},
        responses=refusals(
            MALFORMED
            | {404: "No message has this id", 422: "The Consistency-Token is malformed"}
            | UNAVAILABLE
        ),
    )
    async def get_one(
        self,
        message_id: FromPath[UUID],
        services: NamedDependency[Services],
        consistency_token: ConsistencyToken = None,
    ) -> Message:
        # Answered from the stream whenever the read model is behind: it includes
        # every acknowledged write already, so a token is checked, never waited for.
        if consistency_token is not None:
            place_of(consistency_token)
        return (await _existing(services, message_id)).message
