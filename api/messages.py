"""POST /messages, GET /messages and GET /messages/{id}."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from uuid_utils.compat import uuid7

from api.context import actor_of, request_metadata
from api.problems import (
    INVALID_QUERY,
    Problem,
    invalid,
    problem,
    refuse_unknown_query,
    shape_errors,
)
from api.schemas import Message, MessagePage, SendSms
from api.services import Services
from commands.event_store import read_stream
from commands.receive_sms import IdempotencyKey, KeyReused, ReceiveRequest, Replayed
from domain.commands import ReceiveSms
from domain.events import SmsReceived, stream_of
from domain.message import Status, fold
from domain.phone import PhoneNumber
from domain.sms import Accepted, Duplicate, Quota, RateLimited
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
        return invalid(shape_errors(body, SendSms))
    return None


def _quota_headers(quota: Quota) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(quota.limit),
        "RateLimit-Remaining": str(quota.remaining),
        "RateLimit-Reset": str(quota.reset_after),
    }


async def load_message(services: Services, message_id: UUID) -> Message | None:
    """From the read model; from the stream while the model has not caught up
    (read-your-writes: a message answers 200 the moment its 201 was sent)."""
    async with services.pool.connection() as conn:
        row = await get_message(conn, message_id)
        if row is not None:
            return Message.from_row(row)
        recorded = await read_stream(conn, stream_of(message_id))
    state = fold(r.decode() for r in recorded)
    return None if state is None else Message.from_state(state)


def phone_filter(raw: str | None, field: str) -> str | None:
    if raw is None:
        return None
    # An unescaped "+" in a query string arrives as a space.
    if raw.startswith(" "):
        raw = "+" + raw[1:]
    return PhoneNumber.parse(raw, field).e164


async def _existing(services: Services, message_id: UUID) -> Message:
    message = await load_message(services, message_id)
    if message is None:
        raise NotFoundException(f"no message {message_id}")
    return message


async def _first_response(services: Services, message_id: UUID) -> Message:
    """The body of the 201 that created the message, rebuilt from its first event."""
    async with services.pool.connection() as conn:
        recorded = await read_stream(conn, stream_of(message_id))
    first = recorded[0].decode()
    assert isinstance(first, SmsReceived)
    return Message.received(first)


async def _replay(services: Services, outcome: Replayed) -> Response[Message]:
    body = (
        await _first_response(services, outcome.message_id)
        if outcome.status == 201
        else await _existing(services, outcome.message_id)
    )
    # The quota headers as the first answer sent them, Reset included: a replay
    # repeats that answer; it does not take or report the quota anew.
    quota = {} if outcome.quota is None else _quota_headers(outcome.quota)
    headers = quota | {"Location": f"/messages/{outcome.message_id}", "Idempotent-Replayed": "true"}
    return Response(body, status_code=outcome.status, headers=headers)


IdempotencyKeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description="Replays the first response for a retried request with the same body.",
    ),
]


class MessagesController(Controller):
    path = "/messages"
    tags = ("messages",)

    @post(
        "/",
        status_code=201,
        opt={"scope": "write"},
        before_request=require_json_message,
        summary="Send an SMS",
        responses={},
    )
    async def send(
        self,
        data: JSONBody[SendSms],
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[Message]:
        command = ReceiveSms.create(uuid7(), data.sender, data.recipient, data.message)
        key = None
        if idempotency_key is not None:
            digest = hashlib.sha256(
                msgspec.json.encode([command.sender.e164, command.recipient.e164, command.text])
            ).digest()
            key = IdempotencyKey(actor_of(request), idempotency_key, digest)
        outcome = await services.receive.submit(
            ReceiveRequest(command, request_metadata(request), key)
        )

        if isinstance(outcome, Accepted):
            message_id = outcome.event.message_id
            headers = _quota_headers(outcome.quota) | {"Location": f"/messages/{message_id}"}
            return Response(Message.received(outcome.event), status_code=201, headers=headers)
        if isinstance(outcome, Duplicate):
            services.metrics.duplicates.inc()
            original = await _existing(services, outcome.original)
            headers = _quota_headers(outcome.quota) | {"Location": f"/messages/{original.id}"}
            return Response(original, status_code=200, headers=headers)
        if isinstance(outcome, RateLimited):
            services.metrics.rate_limited.inc()
            return problem(
                429,
                f"{command.sender.e164} has sent {outcome.quota.limit} messages in the last "
                f"60 seconds; retry in {outcome.retry_after} s",
                slug="rate-limited",
                headers=_quota_headers(outcome.quota) | {"Retry-After": str(outcome.retry_after)},
            )
        if isinstance(outcome, Replayed):
            return await _replay(services, outcome)
        assert isinstance(outcome, KeyReused)
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
        responses=INVALID_QUERY,
    )
    async def list_all(
        self,
        services: NamedDependency[Services],
        sender: Annotated[str | None, QueryParameter(name="from", description="E.164")] = None,
        recipient: Annotated[str | None, QueryParameter(name="to", description="E.164")] = None,
        status: FromQuery[Status | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 10,
        offset: Annotated[int, QueryParameter(ge=0, le=2**63 - 1)] = 0,
    ) -> MessagePage:
        filters = {
            "from": phone_filter(sender, "from"),
            "to": phone_filter(recipient, "to"),
            "status": status.value if status else None,
        }
        async with services.pool.connection() as conn:
            rows = await list_messages(
                conn,
                sender=filters["from"],
                recipient=filters["to"],
                status=filters["status"],
                limit=limit + 1,
                offset=offset,
            )
        more = len(rows) > limit
        query = {k: v for k, v in filters.items() if v is not None}
        following = urlencode({**query, "limit": limit, "offset": offset + limit})
        return MessagePage(
            items=[Message.from_row(r) for r in rows[:limit]],
            limit=limit,
            offset=offset,
            next=f"/messages?{following}" if more else None,
        )

    @get("/{message_id:uuid}", summary="One message", opt={"scope": "read"})
    async def get_one(
        self, message_id: FromPath[UUID], services: NamedDependency[Services]
    ) -> Message:
        return await _existing(services, message_id)
