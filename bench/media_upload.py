"""Upload and GET throughput for a 100 KiB JPEG: requests and MiB per second.

    uv run python -m bench.media_upload --uploads 600 --concurrency 8
    uv run python -m bench.media_upload --stores local,s3

Starts `smsq serve` on an embedded PostgreSQL and a media store of its own
(a temporary directory: the user's data are never touched; with `s3`, a
bucket on a moto server started here, or the one SMSQ_TEST_MEDIA_URL names
with the caller's AWS_* variables) and uploads over HTTP, each to a message
of its own:
- new: a different image each time (judged, hashed, written durably, then
  the row and the event committed);
- known: one image already stored, attached to more messages (judged and
  hashed again, linked, no bytes written);
- GET: every new image read back through GET /media/{sha256}, streamed from
  the store.
Beside them, in this process, what the two costly steps take alone: judging
an image (Pillow) and writing it durably to the store. Each store named in
`--stores` gets the same runs, one after the other, on the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import os
import statistics
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api.runtime.embedded import embedded_server
from bench.harness import stop_on_sigterm
from media.objects import ObjectStore
from media.probe import examine
from media.store import LocalStore, MediaStore
from tests.support.images import jpeg_of_bytes
from tests.support.objects import object_storage
from tests.support.phones import random_phone
from tests.support.servers import free_port, smsq_process, wait_ready

SIZE = 100 * 1024
MIB = 1024 * 1024


def variant(base: bytes, n: int) -> bytes:
    """The same picture with a comment segment of its own: other bytes, same decoding cost."""
    comment = f"smsq bench {n}".encode()
    return base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


@dataclass(frozen=True)
class Run:
    label: str
    count: int
    seconds: float
    size: int
    tally: Counter[int] = field(default_factory=Counter)

    def line(self, latencies: list[float] | None = None) -> str:
        rate = self.count / self.seconds
        mib = self.size / MIB / self.seconds
        extra = ""
        if latencies:
            ordered = sorted(latencies)
            p50 = statistics.median(ordered) * 1000
            p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
            extra = f"  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  {dict(self.tally)}"
        return f"{self.label:<34} {rate:9.1f}/s {mib:8.2f} MiB/s{extra}"


def judge_alone(images: list[bytes]) -> Run:
    started = time.perf_counter()
    for data in images:
        examine(data)
    seconds = time.perf_counter() - started
    return Run("judge (Pillow + sha256), 1 thread", len(images), seconds, sum(map(len, images)))


async def store_alone(label: str, store: MediaStore, images: list[bytes]) -> Run:
    named = [(hashlib.sha256(data).hexdigest(), data) for data in images]
    started = time.perf_counter()
    for sha256, data in named:
        await store.put(sha256, io.BytesIO(data))
    seconds = time.perf_counter() - started
    return Run(label, len(images), seconds, sum(map(len, images)))


async def over_http_get(
    label: str, url: str, images: list[bytes], concurrency: int
) -> tuple[Run, list[float]]:
    queue = [hashlib.sha256(data).hexdigest() for data in images]
    tally: Counter[int] = Counter()
    latencies: list[float] = []
    received = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal received
        while queue:
            sha256 = queue.pop()
            started = time.perf_counter()
            response = await client.get(f"/media/{sha256}")
            latencies.append(time.perf_counter() - started)
            tally[response.status_code] += 1
            received += len(response.content)

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Run(label, len(images), seconds, received, tally), latencies


async def over_http(
    label: str,
    url: str,
    images: list[bytes],
    messages: list[str],
    concurrency: int,
) -> tuple[Run, list[float]]:
    queue = list(zip(images, messages, strict=True))
    tally: Counter[int] = Counter()
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            data, message_id = queue.pop()
            started = time.perf_counter()
            response = await client.post(
                f"/messages/{message_id}/media", files=[("file", ("b.jpg", data, "image/jpeg"))]
            )
            latencies.append(time.perf_counter() - started)
            tally[response.status_code] += 1

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return Run(label, len(images), seconds, sum(map(len, images)), tally), latencies


async def create_messages(url: str, count: int) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(_: int) -> str:
            body = {"from": random_phone(), "to": "+447911123456", "message": "bench"}
            response = await client.post("/messages", json=body)
            response.raise_for_status()
            return str(response.json()["id"])

        ids: list[str] = []
        for start in range(0, count, 50):
            ids += await asyncio.gather(*(one(i) for i in range(start, min(count, start + 50))))
        return ids


async def bench(uploads: int, concurrency: int, workers: int, stores: list[str]) -> None:
    base = jpeg_of_bytes(SIZE, seed=1)
    print(f"image: JPEG {len(base):,} bytes; {uploads} uploads per run, {concurrency} at once")
    print(f"machine: {os.cpu_count()} cores; smsq serve with {workers} worker(s)")
    print()

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        print(judge_alone([variant(base, n) for n in range(uploads)]).line())
        db = stack.enter_context(embedded_server(Path(tmp)))
        storage = (
            stack.enter_context(object_storage(os.environ, Path(tmp))) if "s3" in stores else None
        )
        for n, kind in enumerate(stores):
            # Images of their own per store: nothing is known to a store beforehand.
            images = [variant(base, (n + 1) * 1_000_000 + i) for i in range(uploads)]
            env = {
                "SMSQ_DATABASE_URL": db,
                "SMSQ_DATA_DIR": str(Path(tmp) / f"data-{kind}"),
                "SMSQ_WORKERS": str(workers),
                "SMSQ_LOG_LEVEL": "WARNING",
            }
            if kind == "s3":
                assert storage is not None
                os.environ.update(storage.env)
                env["SMSQ_MEDIA_URL"] = storage.fresh_url()
                alone: MediaStore = ObjectStore(storage.fresh_url())
                print(f"-- s3: {storage.described}")
                what = "store (PUT), 1 at a time"
            else:
                alone = LocalStore(Path(tmp) / "alone")
                print(f"-- local: {env['SMSQ_DATA_DIR']}/media")
                what = "store (write + fsync), 1 at a time"
            print((await store_alone(what, alone, images)).line())
            await one_store(env, Path(tmp) / f"serve-{kind}.log", images, concurrency)


async def one_store(env: dict[str, str], log: Path, images: list[bytes], concurrency: int) -> None:
    uploads = len(images)
    port = free_port()
    with smsq_process(["serve"], {**env, "SMSQ_PORT": str(port)}, log) as server:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, server, log, 60)
        messages = await create_messages(url, 2 * uploads)
        runs: list[tuple[str, list[bytes], list[str]]] = [
            ("HTTP upload, new image", images, messages[:uploads]),
            ("HTTP upload, known image", [images[0]] * uploads, messages[uploads:]),
        ]
        for label, batch, targets in runs:
            run, latencies = await over_http(label, url, batch, targets, concurrency)
            print(run.line(latencies))
        run, latencies = await over_http_get("HTTP GET /media/{sha256}", url, images, concurrency)
        print(run.line(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="smsq serve worker processes")
    parser.add_argument(
        "--stores", default="local", help="comma-separated: local, s3 (each gets the same runs)"
    )
    args = parser.parse_args()
    stores = args.stores.split(",")
    if set(stores) - {"local", "s3"}:
        parser.error("--stores takes local and s3")
    stop_on_sigterm()
    os.environ.pop("SMSQ_DATABASE_URL", None)
    asyncio.run(bench(args.uploads, args.concurrency, args.workers, stores))


if __name__ == "__main__":
    main()
