"""Reading `file` parts from a multipart/form-data body as it streams in.

Litestar's own form parsing has no limit per part; this reads the body with
the same parser (`multipart`), stops at the first byte past the per-file
limit, and writes each file, a piece at a time, to a spool: unnamed temporary
files on the store's own file system (a bucket's uploads wait in the system's
temporary directory), which vanish when closed or when the process dies. A
request holds about one piece of a file in memory while its body arrives, not
the whole body, and nothing reaches the store before the upload is judged.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio.to_thread
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
# A file's bytes go to its spool file in pieces of about this size.
PIECE = 256 * 1024


class Spool(ExitStack):
    """Where a request's files wait while they are judged; leaving it removes them all."""

    def __init__(self, directory: Path | None) -> None:
        super().__init__()
        self.directory = directory

    def new(self) -> BinaryIO:
        # Unnamed (O_TMPFILE where the file system has it, else unlinked at once):
        # no crash leaves one behind.
        return self.enter_context(tempfile.TemporaryFile(dir=self.directory))


@dataclass
class Upload:
    number: int
    """1 for the request's first `file` part, 2 for the next, ..."""
    filename: str | None
    file: BinaryIO
    """Its spool file."""
    size: int = 0
    _piece: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def label(self) -> str:
        """How problems name the file: the client's name is shown, never used."""
        return label(self.number, self.filename)

    async def write(self, data: bytes | bytearray) -> None:
        self._piece += data
        self.size += len(data)
        if len(self._piece) >= PIECE:
            await self.flush()

    async def flush(self) -> None:
        piece, self._piece = self._piece, bytearray()
        await anyio.to_thread.run_sync(self.file.write, piece)

    def read(self) -> bytes:
        """Every byte of the file (blocking: call it off the event loop)."""
        self.file.seek(0)
        return self.file.read()


def label(number: int, filename: str | None) -> str:
    if not filename:
        return f"file {number}"
    return f"file {number} ({msgspec.json.encode(filename[:100]).decode()})"


def request_limit(max_bytes: int) -> int:
    """The largest multipart body worth reading: every file at its largest."""
    return MAX_FILES * (max_bytes + PART_OVERHEAD)


async def read_uploads(
    request: Request[Any, Any, Any], spool: Spool, *, max_bytes: int
) -> list[Upload]:
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
    uploads = await parse_form(request.stream(), boundary, spool, max_bytes)
    if not uploads:
        raise Refusal(422, f"the form has no part named {FIELD!r}", slug="form")
    return uploads


async def parse_form(
    stream: AsyncIterator[bytes], boundary: str, spool: Spool, max_bytes: int
) -> list[Upload]:
    """The `file` parts of a multipart body arriving in chunks (an empty one ends it)."""
    uploads: list[Upload] = []
    segment: MultipartSegment | None = None
    current: Upload | None = None
    try:
        with PushMultipartParser(
            boundary, max_segment_size=max_bytes, max_segment_count=MAX_FILES + OTHER_PARTS
        ) as parser:
            async for chunk in stream:
                for event in parser.parse(chunk):
                    if isinstance(event, MultipartSegment):
                        segment, current = event, None
                        if segment.name == FIELD:
                            if len(uploads) == MAX_FILES:
                                raise Refusal(
                                    413, f"at most {MAX_FILES} files per request", slug="too-large"
                                )
                            current = Upload(len(uploads) + 1, segment.filename, spool.new())
                    elif event is None:
                        if current is not None:
                            await current.flush()
                            uploads.append(current)
                        segment, current = None, None
                    elif current is not None:
                        await current.write(event)
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
        return f"{label(done + 1, segment.filename)} is larger than {max_bytes:,} bytes"
    return f"the form is too large: {error}"
