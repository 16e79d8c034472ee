"""The local content-addressed store, on a real file system."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from media.store import LocalStore
from tests.support.media import stored_files


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_bytes_are_kept_under_their_hash_and_read_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "data" / "media")  # created on first use
    data = b"an image, as far as the store cares"
    await store.put(digest(data), data)
    path = tmp_path / "data" / "media" / digest(data)[:2] / digest(data)[2:4] / digest(data)
    assert stored_files(store.root) == [path]  # no temporary file left
    assert await store.get(digest(data)) == data
    assert await store.get("0" * 64) is None


async def test_content_already_kept_is_never_rewritten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = b"first"
    await store.put(digest(data), data)
    path = store.path_of(digest(data))
    before = path.stat()
    await store.put(digest(data), data)
    await store.put(digest(data), b"anything else under the same name")
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path.read_bytes() == data


@pytest.mark.parametrize("name", ["../../etc/passwd", "A" * 64, "0" * 63, "", "0" * 64 + "/x"])
async def test_a_name_that_is_not_a_hash_is_refused(tmp_path: Path, name: str) -> None:
    store = LocalStore(tmp_path / "media")
    with pytest.raises(ValueError, match="not a sha256"):
        await store.put(name, b"x")
    with pytest.raises(ValueError, match="not a sha256"):
        await store.get(name)
    assert not (tmp_path / "media").exists()


async def test_concurrent_puts_of_the_same_bytes_leave_one_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = bytes(range(256)) * 4096  # 1 MiB: writes that overlap in time
    # Each put runs in a worker thread of its own, so the writes really race.
    await asyncio.gather(*(store.put(digest(data), data) for _ in range(20)))
    assert stored_files(tmp_path) == [store.path_of(digest(data))]
    assert store.path_of(digest(data)).read_bytes() == data
