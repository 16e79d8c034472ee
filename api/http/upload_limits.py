"""What an upload may take of this process and of the disk, judged before its body is read.

Each process admits at most `SMSQ_MAX_UPLOADS_IN_FLIGHT` uploads, and at most
`SMSQ_MAX_UPLOAD_BYTES_IN_FLIGHT` bytes of their bodies (by Content-Length),
at once; past either, 503 with `Retry-After`. The store takes new bytes only
while it stays within `SMSQ_MEDIA_BUDGET_BYTES` (every host together) and,
for a local directory, leaves `SMSQ_MEDIA_MIN_FREE_BYTES` free on its file
system; past either, 507. Both are judged again once the images are known,
before a byte is written to the store.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from litestar import Request

from api.http.problems import Refusal
from api.runtime.settings import Settings
from media.store import MediaStore

# A refused upload has sent nothing worth keeping: it may come back at once
# (another client's upload usually ends within a second or two).
RETRY_AFTER = "1"


class UploadGate:
    """The uploads in flight in this process, by count and by bytes.

    One event loop per process, and no await between the check and the count:
    no lock is needed. A request larger than the whole byte budget is admitted
    only alone, so that a setting below the largest allowed body refuses nothing
    for ever.
    """

    def __init__(self, uploads: int, max_bytes: int) -> None:
        self.max_uploads = uploads
        self.max_bytes = max_bytes
        self.uploads = 0
        self.bytes = 0

    @contextmanager
    def admit(self, size: int) -> Iterator[None]:
        if self.uploads >= self.max_uploads:
            raise _busy(f"{self.uploads} uploads are in flight, the most this process takes")
        if self.uploads and self.bytes + size > self.max_bytes:
            raise _busy(
                f"{self.bytes:,} bytes of uploads are in flight; {size:,} more would pass"
                f" the {self.max_bytes:,} this process takes"
            )
        self.uploads += 1
        self.bytes += size
        try:
            yield
        finally:
            self.uploads -= 1
            self.bytes -= size


def declared_size(request: Request[Any, Any, Any], largest: int) -> int:
    """The body's size as its Content-Length says; the largest allowed without one."""
    try:
        return min(int(request.headers["content-length"]), largest)
    except (KeyError, ValueError):
        return largest


def check_free_space(store: MediaStore, settings: Settings, incoming: int) -> None:
    """507 when writing `incoming` bytes would leave the store's file system below the floor."""
    floor = settings.media_min_free_bytes
    if store.directory is None or not floor:
        return
    free = shutil.disk_usage(store.directory).free
    if free - incoming < floor:
        raise _full(
            f"the media file system has {free:,} bytes free; {incoming:,} more would leave"
            f" less than the {floor:,} it keeps free"
        )


def check_budget(settings: Settings, stored: int, incoming: int) -> None:
    """507 when the store is at its budget, or `incoming` new bytes would pass it."""
    budget = settings.media_budget_bytes
    if budget is None:
        return
    if stored >= budget or stored + incoming > budget:
        raise _full(
            f"the media store holds {stored:,} bytes of its {budget:,}-byte budget;"
            f" {incoming:,} more do not fit"
            if incoming
            else f"the media store holds {stored:,} bytes, its budget is {budget:,}"
        )


def _busy(detail: str) -> Refusal:
    return Refusal(503, detail, slug="uploads-busy", headers={"Retry-After": RETRY_AFTER})


def _full(detail: str) -> Refusal:
    return Refusal(507, f"{detail}; messages are still accepted", slug="media-full")
