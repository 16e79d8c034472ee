"""Reading `file` parts from a multipart/form-data body as it streams in.

Litestar's own form parsing has no limit per part and spools large parts to
temporary files; this reads the body with the same parser (`multipart`), keeps
each file in memory and stops at the first byte past the per-file limit, so
nothing is written anywhere before the upload has been judged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from api.http.problems import Refusal

FIELD = "file"
MAX_FILES = 10
# Room for a part's boundary and headers, when bounding a whole request.
PART_OVERHEAD = 16 * 1024
# Parts with other names are read past, and count against this many more.
OTHER_PARTS = 10


class Upload(msgspec.Struct, frozen=True):
    number: int
    """1 for the request's first `file` part, 2 for the next, ..."""
    filename: str | None
    data: bytes

    @property
    def label(self) -> str:
        """How problems name the file: the client's name is shown, never used."""
        if not self.filename:
            return f"file {self.number}"
        return f"file {self.number} ({msgspec.json.encode(self.filename[:100]).decode()})"


def request_limit(max_bytes: int) -> int:
    """The largest multipart body worth reading: every file at its largest."""
    return MAX_FILES * (max_bytes + PART_OVERHEAD)


async def read_uploads(request: Request[Any, Any, Any], *, max_bytes: int) -> list[Upload]:
    """The request's `file` parts; the caller bounds how long the body may take."""
    media_type, options = request.content_type
    if media_type != "multipart/form-data":
        shown = media_type or "none"
        raise Refusal(
            415, f"Content-Type must be multipart/form-data, not {shown}", slug="media-type"
        )
    boundary = options.get("boundary")
    if not boundary:
        raise Refusal(422, "the multipart/form-data Content-Type has no boundary", slug="form")
    uploads = await parse_form(request.stream(), boundary, max_bytes)
    if not uploads:
        raise Refusal(422, f"the form has no part named {FIELD!r}", slug="form")
    return uploads


async def parse_form(stream: AsyncIterator[bytes], boundary: str, max_bytes: int) -> list[Upload]:
    """The `file` parts of a multipart body arriving in chunks (an empty one ends it)."""
    uploads: list[Upload] = []
    segment: MultipartSegment | None = None
    data: bytearray | None = None
    try:
        with PushMultipartParser(
            boundary, max_segment_size=max_bytes, max_segment_count=MAX_FILES + OTHER_PARTS
        ) as parser:
            async for chunk in stream:
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment, data = event, None
                        if segment.name == FIELD:
                            if len(uploads) == MAX_FILES:
                                raise Refusal(
                                    413, f"at most {MAX_FILES} files per request", slug="too-large"
                                )
                            data = bytearray()
                    elif event is None:
                        if data is not None and segment is not None:
                            uploads.append(Upload(len(uploads) + 1, segment.filename, bytes(data)))
                        segment, data = None, None
                    elif data is not None:
                        data += event
                if parser.closed:
                    break
    except ParserLimitReached as error:
        detail = _too_large(segment, len(uploads), max_bytes, error)
        raise Refusal(413, detail, slug="too-large") from None
    except ParserError as error:
        raise Refusal(422, f"not valid multipart/form-data: {error}", slug="form") from None
    return uploads


def _too_large(
    segment: MultipartSegment | None, done: int, max_bytes: int, error: ParserLimitReached
) -> str:
    if segment is not None and segment.name == FIELD:
        upload = Upload(done + 1, segment.filename, b"")
        return f"{upload.label} is larger than {max_bytes:,} bytes"
    return f"the form is too large: {error}"
