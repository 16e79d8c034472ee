"""The content-addressed stores: a directory on a real file system, and a
bucket behind a real S3 API."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from pathlib import Path

import pytest

from media.objects import ObjectStore
from media.store import CHUNK, LocalStore, MediaStore, read_all
from tests.support.media import MediaPlace, key, media_place, stored_files


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> MediaPlace:
    return media_place(request.param, tmp_path / "data", request)


@pytest.fixture
def store(place: MediaPlace) -> MediaStore:
    return LocalStore(place.data_dir / "media") if place.url is None else ObjectStore(place.url)


async def test_bytes_are_kept_under_their_hash_and_read_back(
    store: MediaStore, place: MediaPlace
) -> None:
    data = b"an image, as far as the store cares"
    await store.put(digest(data), io.BytesIO(data))
    assert await place.names() == [key(digest(data))]  # no temporary file left
    blob = await store.get(digest(data))
    assert blob is not None
    assert blob.size == len(data)
    assert await read_all(blob) == data
    assert await store.get("0" * 64) is None


async def test_the_bytes_come_out_in_pieces(store: MediaStore) -> None:
    data = os.urandom(64 * CHUNK + 123)  # 4 MiB and a bit
    await store.put(digest(data), io.BytesIO(data))
    blob = await store.get(digest(data))
    assert blob is not None
    assert blob.size == len(data)
    pieces = [chunk async for chunk in blob.chunks]
    assert b"".join(pieces) == data
    # Streamed, not read whole: pieces of at least CHUNK bytes, as the file is
    # read or as the connection to the bucket delivers them.
    assert len(pieces) >= 4, [len(p) for p in pieces]
    assert min(len(p) for p in pieces[:-1]) >= CHUNK


async def test_content_already_kept_is_never_rewritten(
    store: MediaStore, place: MediaPlace
) -> None:
    data = b"first"
    await store.put(digest(data), io.BytesIO(data))
    await store.put(digest(data), io.BytesIO(data))
    await store.put(digest(data), io.BytesIO(b"anything else under the same name"))
    blob = await store.get(digest(data))
    assert blob is not None
    assert await read_all(blob) == data
    assert await place.names() == [key(digest(data))]


async def test_a_local_file_already_kept_is_not_touched(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = b"first"
    await store.put(digest(data), io.BytesIO(data))
    path = store.path_of(digest(data))
    before = path.stat()
    await store.put(digest(data), io.BytesIO(b"anything else under the same name"))
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("name", ["../../etc/passwd", "A" * 64, "0" * 63, "", "0" * 64 + "/x"])
async def test_a_name_that_is_not_a_hash_is_refused(
    store: MediaStore, place: MediaPlace, name: str
) -> None:
    with pytest.raises(ValueError, match="not a sha256"):
        await store.put(name, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="not a sha256"):
        await store.get(name)
    assert await place.names() == []
    assert not (place.data_dir / "media").exists()


async def test_concurrent_puts_of_the_same_bytes_leave_one_file(
    store: MediaStore, place: MediaPlace
) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: writes that overlap in time
    # Each put runs in a worker thread of its own, or is a request of its own
    # to the S3 server, so the writes really race.
    await asyncio.gather(*(store.put(digest(data), io.BytesIO(data)) for _ in range(20)))
    assert await place.names() == [key(digest(data))]
    blob = await store.get(digest(data))
    assert blob is not None
    assert await read_all(blob) == data


async def test_a_local_store_is_created_on_first_use(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data" / "media")
    data = b"x"
    await store.put(digest(data), io.BytesIO(data))
    assert stored_files(tmp_path) == [store.path_of(digest(data))]
