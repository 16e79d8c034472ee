"""POST and GET /messages/{id}/media."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import anyio.to_thread
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Encoding,
    Link,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    RequestBody,
    Schema,
)
from litestar.params import FromPath

from api.http.consistency import HEADER, WRITTEN, ConsistencyToken, place_of, token_of
from api.http.context import request_metadata
from api.http.openapi import NO_STORE, Documented
from api.http.problems import MALFORMED, UNAVAILABLE, Refusal, refusals
from api.http.schemas import Media, MediaList
from api.http.services import Services
from api.http.upload_limits import check_budget, check_free_space, declared_size
from api.http.uploads import FIELD, MAX_FILES, Spool, Upload, read_uploads, request_limit
from commands.attach_media import attach_media, media_usage
from commands.event_store import read_stream
from domain.commands import AttachMedia, Image
from domain.events import stream_of
from domain.message import (
    MessageState,
    TooManyImages,
    UnknownMessage,
    attached,
    fold,
    message_decider,
)
from media.probe import ALLOWED, CONTENT_TYPES, NotAnImage, TooManyPixels, examine
from projections.media import media_of


@dataclass
class UploadOperation(Documented):
    """The body is read as it streams (api/uploads.py), so it is described here."""

    # What a client does next with an image it attached: fetch its bytes.
    links = {  # noqa: RUF012 (read only)
        "201": {
            "GetMediaFile": Link(
                operation_id="MediaSha256MediaFile",
                parameters={"sha256": "$response.body#/items/0/sha256"},
            )
        }
    }

    def __post_init__(self) -> None:
        files = Schema(
            type=OpenAPIType.ARRAY,
            items=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY),
            min_items=1,
            max_items=MAX_FILES,
        )
        form = Schema(type=OpenAPIType.OBJECT, properties={FIELD: files}, required=[FIELD])
        # Each part is judged from its bytes, so only these types are accepted.
        images = ", ".join(sorted(set(CONTENT_TYPES.values())))
        self.request_body = RequestBody(
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=form, encoding={FIELD: Encoding(content_type=images)}
                )
            },
            required=True,
            description=f"One or more `{FIELD}` parts, each a {ALLOWED} image.",
        )
        super().__post_init__()


class MessageMediaController(Controller):
    path = "/messages/{message_id:uuid}/media"
    tags = ("media",)
    cache_control = NO_STORE

    @post(
        "/",
        status_code=201,
        opt={"scope": "write"},
        operation_class=UploadOperation,
        summary="Attach images to a message",
        description="201 when something new was attached; 200 when all of it was already.",
        responses={
            200: ResponseSpec(MediaList, description="Every image was attached already"),
            **refusals(
                MALFORMED
                | {
                    404: "No message has this id",
                    408: "The body did not arrive within SMSQ_BODY_TIMEOUT seconds",
                    413: "A file, or the whole body, is too large; or an image has too many"
                    " pixels, or there are too many files",
                    415: f"The body is not multipart/form-data, or a file is not a {ALLOWED}"
                    " image (the problem names it)",
                    409: "The images new to the message would give it more than"
                    " SMSQ_MAX_MEDIA_PER_MESSAGE (10 by default): none is attached",
                    422: f"The form is malformed or has no `{FIELD}` part",
                    503: "The database or the media store is unavailable, or this process"
                    " has as many uploads"
                    " (SMSQ_MAX_UPLOADS_IN_FLIGHT) or bytes of uploads"
                    " (SMSQ_MAX_UPLOAD_BYTES_IN_FLIGHT) in flight as it takes (answered"
                    " before the body is read); `Retry-After` says when to try again",
                    507: "The media store is at its budget (SMSQ_MEDIA_BUDGET_BYTES), or the"
                    " upload would leave its disk below SMSQ_MEDIA_MIN_FREE_BYTES; nothing"
                    " is written, and messages are still accepted",
                }
            ),
        },
        response_headers=[
            ResponseHeader(
                name="Location",
                description="The message's images.",
                documentation_only=True,
                required=True,
            ),
            *WRITTEN,
        ],
    )
    async def attach(
        self,
        message_id: FromPath[UUID],
        request: Request[Any, Any, Any],
        services: NamedDependency[Services],
    ) -> Response[MediaList]:
        settings, store = services.settings, services.store
        declared = declared_size(request, request_limit(settings.max_media_bytes))
        # Everything here is judged before the body is read: a refused upload
        # costs no memory, no disk and no decoding.
        with services.uploads.admit(declared), Spool(store.directory) as spool:
            state = await _message(services, message_id)
            check_free_space(store, settings, declared)  # the spool is on that file system
            if settings.media_budget_bytes is not None:
                async with services.pool.connection() as conn:
                    check_budget(settings, (await media_usage(conn)).stored, 0)
            uploads = await _read(request, spool, settings.body_timeout, settings.max_media_bytes)
            images = [
                await anyio.to_thread.run_sync(_examine, upload, limiter=services.decoders)
                for upload in uploads
            ]
            command = AttachMedia(
                message_id=message_id,
                images=tuple(images),
                max_media=settings.max_media_per_message,
            )
            # The limit on images, decided on the state read before the body, so
            # that a refused upload writes nothing (the time is no part of it).
            # The decision that counts is taken again under the stream's lock.
            _refuse(message_decider.decide(command, state, state.received_at))
            await _check_room(services, images)
            kept: set[str] = set()
            for image, upload in zip(images, uploads, strict=True):
                if image.sha256 not in kept:
                    upload.file.seek(0)
                    await store.put(image.sha256, upload.file)
                    kept.add(image.sha256)
        # Only now that the bytes are safe: the row and the event.
        async with services.pool.connection() as conn:
            handled = await attach_media(conn, command, request_metadata(request))
        _refuse(handled.decision)
        assert handled.state is not None
        assert handled.place is not None
        return Response(
            MediaList([Media.attached(m) for m in attached(command, handled.state)]),
            status_code=201 if handled.decision else 200,
            headers={
                "Location": f"/messages/{message_id}/media",
                HEADER: token_of(handled.place),
            },
        )

    @get(
        "/",
        opt={"scope": "read"},
        summary="A message's images, in attach order",
        responses=refusals(
            MALFORMED
            | {404: "No message has this id", 422: "The Consistency-Token is malformed"}
            | UNAVAILABLE
        ),
    )
    async def list_media(
        self,
        message_id: FromPath[UUID],
        services: NamedDependency[Services],
        consistency_token: ConsistencyToken = None,
    ) -> MediaList:
        # As for one message: the stream answers while the model is behind, so an
        # image is listed the moment its 201 is sent, and a token is never waited for.
        if consistency_token is not None:
            place_of(consistency_token)
        async with services.pool.connection() as conn:
            view = await media_of(conn, message_id)
        if view is None:
            raise NotFoundException(f"no message {message_id}")
        if view.rows is not None:
            return MediaList([Media.attached(r) for r in view.rows])
        state = fold(r.decode() for r in view.stream)
        assert state is not None
        return MediaList([Media.attached(m) for m in state.media])


async def _message(services: Services, message_id: UUID) -> MessageState:
    async with services.pool.connection() as conn:
        stream = await read_stream(conn, stream_of(message_id))
    state = fold(r.decode() for r in stream)
    if state is None:
        raise NotFoundException(f"no message {message_id}")
    return state


async def _read(
    request: Request[Any, Any, Any], spool: Spool, limit: float, max_bytes: int
) -> list[Upload]:
    try:
        # A client that stops sending mid-body must not hold a request forever.
        async with asyncio.timeout(limit):
            return await read_uploads(request, spool, max_bytes=max_bytes)
    except TimeoutError:
        raise Refusal(408, f"the body did not arrive within {limit} s", slug="timeout") from None


async def _check_room(services: Services, images: list[Image]) -> None:
    """The new bytes, those the store does not hold yet, fit its budget and its disk."""
    distinct = {i.sha256: i.size for i in images}
    known = 0
    if services.settings.media_budget_bytes is not None:
        async with services.pool.connection() as conn:
            usage = await media_usage(conn, list(distinct))
        known = usage.known
        check_budget(services.settings, usage.stored, sum(distinct.values()) - known)
    check_free_space(services.store, services.settings, sum(distinct.values()) - known)


def _refuse(decision: object) -> None:
    match decision:
        case UnknownMessage():
            raise NotFoundException(f"no message {decision.message_id}")
        case TooManyImages():
            raise Refusal(
                409,
                f"message {decision.message_id} has {decision.attached} images and"
                f" {decision.limit} is the most it may have: the {decision.adding} new"
                " here would pass it, so none is attached",
                slug="too-many-images",
            )


def _examine(upload: Upload) -> Image:
    try:
        return examine(upload.read())
    except NotAnImage as error:
        raise Refusal(415, f"{upload.label} {error}", slug="unsupported-image") from None
    except TooManyPixels as error:
        raise Refusal(413, f"{upload.label} {error}", slug="too-many-pixels") from None
