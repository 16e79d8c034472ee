"""GET /media/{sha256}: an image's bytes, named by their hash and never changing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Reference,
    Schema,
)
from litestar.params import FromPath, HeaderParameter, Parameter
from litestar.response import Stream

from api.http.openapi import Documented
from api.http.problems import MALFORMED, STORE_UNAVAILABLE, refusals
from api.http.services import Services
from media.probe import CONTENT_TYPES
from projections.media import get_blob

log = logging.getLogger(__name__)

# Private: the bytes need a key, so no shared cache (a proxy, a CDN) may keep them.
IMMUTABLE = "private, max-age=31536000, immutable"

Sha256 = Annotated[str, Parameter(pattern=r"^[0-9a-f]{64}$", description="lowercase hex")]


_IMAGE = {
    "ETag": "The image's sha256, quoted.",
    "Cache-Control": "The bytes behind a name never change; private, as they need a key.",
}


@dataclass
class MediaFileOperation(Documented):
    """The bytes come with the type sniffed from them, one of the allowed images, and
    a 304 answers an If-None-Match that names them."""

    def __post_init__(self) -> None:
        super().__post_init__()
        responses: dict[str, Any] = dict(self.responses or {})
        bytes_ = OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        )
        headers: dict[str, OpenAPIHeader | Reference] = {
            name: OpenAPIHeader(
                schema=Schema(type=OpenAPIType.STRING), description=description, required=True
            )
            for name, description in _IMAGE.items()
        }
        ok = responses["200"]
        assert isinstance(ok, OpenAPIResponse)
        ok.content = dict.fromkeys(sorted(set(CONTENT_TYPES.values())), bytes_)
        ok.headers = {**(ok.headers or {}), **headers}
        responses["304"] = OpenAPIResponse(
            description="The If-None-Match names this image: the client has its bytes",
            headers=headers,
        )
        self.responses = responses


@get(
    "/media/{sha256:str}",
    opt={"scope": "read"},
    tags=["media"],
    summary="An image's bytes",
    media_type="application/octet-stream",
    operation_class=MediaFileOperation,
    responses=refusals(
        MALFORMED
        | {
            404: "No image has this sha256",
            422: "The sha256 is not 64 lowercase hex digits",
        }
        | STORE_UNAVAILABLE
    ),
)
async def media_file(
    sha256: FromPath[Sha256],
    services: NamedDependency[Services],
    if_none_match: Annotated[
        str | None, HeaderParameter(name="If-None-Match", required=False)
    ] = None,
) -> Response[bytes] | Stream:
    async with services.pool.connection() as conn:
        blob = await get_blob(conn, sha256)
    if blob is None:
        raise NotFoundException(f"no media {sha256}")
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if if_none_match is not None and _matches(if_none_match, etag):
        return Response(b"", status_code=304, headers=headers)
    stored = await services.store.get(sha256)
    if stored is None:
        log.error("media %s is recorded but its file is missing from the store", sha256)
        raise NotFoundException(f"the bytes of media {sha256} are missing from the store")
    # Streamed as the store yields it: a response holds one chunk in memory,
    # not the whole image.
    return Stream(
        stored.chunks,
        headers=headers
        | {
            # A header, not `media_type=`: Litestar lets the route's declared
            # type (octet-stream, for the schema) win over a Stream's own.
            "Content-Type": blob.content_type,
            "Content-Length": str(stored.size),
            "X-Content-Type-Options": "nosniff",
            # Should anything ever render it as a document, it can run nothing.
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


def _matches(if_none_match: str, etag: str) -> bool:
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags
