"""Uploads against a real `smsq serve`: many at once stay within the process's
memory, and a nearly full media volume refuses them while messages go on."""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import images
from tests.support.media import new_message, part, upload
from tests.support.servers import Server, server

MIB = 1024 * 1024
# How many uploads are sent at once, against how many the server takes.
UPLOADS = 50
CAP = 8
# What a serving process may grow by, at its peak, over what it held once
# warm: below what the bodies in flight alone would take in memory (50 x 5 MiB;
# read into a buffer and copied, as uploads once were, twice that). Measured
# (docs/reliability.md): 95 to 125 MiB, most of it the allocator keeping what
# the admitted uploads' pieces and the decoders freed.
GROWTH_BOUND = 192 * MIB


@functools.cache  # a quarter of a second to draw and encode; two tests send it
def near_five_mib() -> bytes:
    data = images.png(seed=500, size=(1320, 1320))  # noise: it does not compress
    assert 4.9 * MIB < len(data) <= 5 * MIB
    return data


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def serving_processes(proc: subprocess.Popen[bytes]) -> list[int]:
    """`smsq serve` and the HTTP server's worker processes it started."""
    root = psutil.Process(proc.pid)
    return [root.pid, *(p.pid for p in root.children(recursive=True))]


@pytest.fixture(scope="module")
def capped(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("capped")
    env = {
        "SMSQ_DATABASE_URL": database_url,
        "SMSQ_DATA_DIR": str(workdir / "data"),
        "SMSQ_LOG_LEVEL": "WARNING",
        "SMSQ_MAX_UPLOADS_IN_FLIGHT": str(CAP),
        "SMSQ_BODY_TIMEOUT": "30",
    }
    with server(env, workdir / "serve.log") as served:
        yield served


async def test_uploads_past_the_cap_are_503_and_memory_stays_bounded(capped: Server) -> None:
    data = near_five_mib()
    limits = httpx.Limits(max_connections=UPLOADS + 1)
    async with httpx.AsyncClient(base_url=capped.url, timeout=120, limits=limits) as client:
        # Made together: the server commits them in a few batches, not one by one.
        messages = await asyncio.gather(*(new_message(client) for _ in range(UPLOADS)))
        # Warm: every module an upload uses is loaded, every pool opened.
        assert (await upload(client, messages[0], part(data))).status_code == 201
        pids = serving_processes(capped.proc)
        warm = {pid: status_kib(pid, "VmRSS") for pid in pids}

        responses = await asyncio.gather(*(upload(client, m, part(data)) for m in messages))

    peak = {pid: status_kib(pid, "VmHWM") for pid in pids}
    counted = Counter(r.status_code for r in responses)
    busy = [r for r in responses if r.status_code == 503]
    growth = {pid: peak[pid] - warm[pid] for pid in pids}
    print(
        f"\n{UPLOADS} uploads of {len(data):,} bytes, cap {CAP}: {dict(counted)};"
        f" per serving process, warm RSS -> peak (VmHWM) MiB: "
        + ", ".join(f"{warm[p] / MIB:.0f} -> {peak[p] / MIB:.0f}" for p in pids)
    )
    # (The first message has the image already: its upload, when admitted, is a 200.)
    assert set(counted) <= {200, 201, 503}, counted
    assert counted[201] + counted[200] >= CAP
    assert busy, "no upload was refused"
    for response in busy:
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/uploads-busy"
    assert max(growth.values()) < GROWTH_BOUND, growth


async def test_an_answer_given_before_the_body_reaches_the_client(capped: Server) -> None:
    # The server answers 404 without reading the 5 MiB; unless it reads the rest
    # and drops it, the connection is reset and the client never sees the answer.
    async with httpx.AsyncClient(base_url=capped.url, timeout=30) as client:
        unknown = await upload(
            client, "0190b6a4-0000-7000-8000-000000000000", part(near_five_mib())
        )
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["status"] == 404
        # And the connection serves the next request.
        assert (await client.get("/healthz")).status_code == 200


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 32 MiB file system of the test's own, for the media: a tmpfs."""
    volume = tmp_path / "volume"
    volume.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(volume)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); the budget test stands")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=True)


async def test_a_nearly_full_media_volume_refuses_uploads_and_takes_messages(
    database_url: str, small_volume: Path, tmp_path: Path
) -> None:
    floor = 8 * MIB
    env = {
        "SMSQ_DATABASE_URL": database_url,
        "SMSQ_DATA_DIR": str(small_volume),
        "SMSQ_LOG_LEVEL": "WARNING",
        "SMSQ_MEDIA_MIN_FREE_BYTES": str(floor),
    }
    with server(env, tmp_path / "serve.log") as served:
        # Nearly full: 10 MiB free, 2 MiB above the floor.
        ballast = small_volume / "ballast"
        ballast.write_bytes(b"\0" * (shutil.disk_usage(small_volume).free - 10 * MIB))
        big, small = images.jpeg_of_bytes(3 * MIB, seed=501), images.png(seed=502)
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
            message_id = await new_message(client)
            free = shutil.disk_usage(small_volume).free

            refused = await upload(client, message_id, part(big, "big.jpg"))

            assert refused.status_code == 507, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"] == "/problems/media-full"
            assert shutil.disk_usage(small_volume).free == free  # not a byte written
            # Messages are still accepted, and an upload that leaves the floor is taken.
            await new_message(client)
            assert (await upload(client, message_id, part(small))).status_code == 201
            listed = await client.get(f"/messages/{message_id}/media")
            assert len(listed.json()["items"]) == 1
