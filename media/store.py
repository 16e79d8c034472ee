"""The content-addressed file store: bytes kept under their sha256, written once.

`MediaStore` is what the service needs of a store; `LocalStore` keeps the
files in a directory (`ab/cd/<sha256>`), and `media.objects.ObjectStore` keeps
them in an S3 bucket under the same names, behind the same interface.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio.to_thread

SHA256 = re.compile(r"[0-9a-f]{64}")

# What a GET holds in memory per response: a 5 MiB image is sent in 80 pieces.
CHUNK = 64 * 1024


class StoreUnavailable(Exception):
    """The store did not answer, or refused to (a bucket's endpoint down or
    unreachable, its credentials refused): nothing was kept or read."""


@dataclass(frozen=True)
class Blob:
    """Bytes on their way out of a store: their size first, then the bytes
    themselves, read as the consumer asks for them."""

    size: int
    chunks: AsyncIterator[bytes]


class MediaStore(Protocol):
    async def put(self, sha256: str, source: BinaryIO) -> None:
        """Keep the bytes of `source` (read from where it stands to its end) under
        `sha256`, durably, before returning. Content already kept under that hash
        is left as it is."""

    async def get(self, sha256: str) -> Blob | None:
        """The bytes kept under `sha256`, as a stream, or None."""

    @property
    def directory(self) -> Path | None:
        """The local directory the bytes are written to (its file system is the
        one that fills up), or None when they leave the machine (a bucket)."""


def key_of(sha256: str) -> str:
    """Where a hash's bytes live, relative to a store's root: `ab/cd/<sha256>`."""
    if not SHA256.fullmatch(sha256):
        raise ValueError(f"not a sha256 in hex: {sha256[:80]!r}")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


async def read_all(blob: Blob) -> bytes:
    """Every byte of `blob`, for callers that want them at once (tests, tools)."""
    return b"".join([chunk async for chunk in blob.chunks])


class LocalStore:
    """Files under `root`: written to a temporary file in their final directory,
    fsynced, then linked into place and the directory fsynced. A crash leaves at
    worst an orphan file, never a partial one under a hash."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def directory(self) -> Path:
        return self.root

    def path_of(self, sha256: str) -> Path:
        return self.root / key_of(sha256)

    async def put(self, sha256: str, source: BinaryIO) -> None:
        await anyio.to_thread.run_sync(self._put, self.path_of(sha256), source)

    async def get(self, sha256: str) -> Blob | None:
        path = self.path_of(sha256)
        try:
            file = await anyio.to_thread.run_sync(path.open, "rb")
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(file.fileno()).st_size
        except BaseException:
            file.close()
            raise
        return Blob(size, _chunks_of(file))

    def _put(self, path: Path, source: BinaryIO) -> None:
        if not path.exists():
            _make_dirs(path.parent)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".partial")
            try:
                with os.fdopen(fd, "wb") as file:
                    shutil.copyfileobj(source, file, CHUNK)
                    file.flush()
                    os.fsync(file.fileno())
                # A link, not a rename: it fails rather than replace what a
                # concurrent upload of the same bytes put there first.
                with contextlib.suppress(FileExistsError):
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
        # Also when the file was there already: it may have been linked by a
        # concurrent upload that has not yet made its name durable.
        _fsync_dir(path.parent)


async def _chunks_of(file: BinaryIO) -> AsyncIterator[bytes]:
    # Reads run in worker threads, so a slow disk never stalls the event loop;
    # the file is closed however the stream ends (read to its end, or the
    # client gone mid-way).
    try:
        while chunk := await anyio.to_thread.run_sync(file.read, CHUNK):
            yield chunk
    finally:
        file.close()


def _make_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents, each made durable in its parent."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        try:
            created.mkdir()
        except FileExistsError:
            continue
        _fsync_dir(created.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
