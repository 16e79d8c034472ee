"""GET /media/{sha256}: an image's bytes, named by their hash and never changing."""

from __future__ import annotations

import logging
from typing import Annotated

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, HeaderParameter, Parameter
from litestar.response import Stream

from api.http.services import Services
from projections.media import get_blob

log = logging.getLogger(__name__)

IMMUTABLE = "public, max-age=31536000, immutable"

Sha256 = Annotated[str, Parameter(pattern=r"^[0-9a-f]{64}$", description="lowercase hex")]


@get(
    "/media/{sha256:str}",
    opt={"scope": "read"},
    tags=["media"],
    summary="An image's bytes",
    media_type="application/octet-stream",
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
