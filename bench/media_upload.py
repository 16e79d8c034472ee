"""Upload throughput for a 100 KiB JPEG: uploads per second and MiB per second.

    uv run python -m bench.media_upload --uploads 600 --concurrency 8

Starts `smsq serve` on an embedded PostgreSQL and a media directory of its
own (a temporary directory: the user's data are never touched) and uploads
over HTTP, each to a message of its own:
- new: a different image each time (judged, hashed, written and fsynced,
  then the row and the event committed);
- known: one image already stored, attached to more messages (judged and
  hashed again, linked, no bytes written).
Beside them, in this process, what the two costly steps take alone: judging
an image (Pillow) and writing it durably to the store.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api.runtime.embedded import embedded_server
from media.probe import examine
from media.store import LocalStore
from tests.support.images import jpeg_of_bytes
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


async def store_alone(store: LocalStore, images: list[bytes]) -> Run:
    named = [(hashlib.sha256(data).hexdigest(), data) for data in images]
    started = time.perf_counter()
    for sha256, data in named:
        await store.put(sha256, data)
    seconds = time.perf_counter() - started
    return Run("store (write + fsync), 1 at a time", len(images), seconds, sum(map(len, images)))


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


async def bench(uploads: int, concurrency: int, workers: int) -> None:
    base = jpeg_of_bytes(SIZE, seed=1)
    images = [variant(base, n) for n in range(uploads)]
    print(f"image: JPEG {len(base):,} bytes; {uploads} uploads per run, {concurrency} at once")
    print(f"machine: {os.cpu_count()} cores; smsq serve with {workers} worker(s)")
    print()

    with tempfile.TemporaryDirectory() as tmp:
        print(judge_alone(images).line())
        print((await store_alone(LocalStore(Path(tmp) / "alone"), images)).line())

        with embedded_server(Path(tmp)) as db:
            port = free_port()
            env = {
                "SMSQ_DATABASE_URL": db,
                "SMSQ_DATA_DIR": str(Path(tmp) / "data"),
                "SMSQ_PORT": str(port),
                "SMSQ_WORKERS": str(workers),
                "SMSQ_LOG_LEVEL": "WARNING",
            }
            log = Path(tmp) / "serve.log"
            with smsq_process(["serve"], env, log) as server:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="smsq serve worker processes")
    args = parser.parse_args()
    os.environ.pop("SMSQ_DATABASE_URL", None)
    asyncio.run(bench(args.uploads, args.concurrency, args.workers))


if __name__ == "__main__":
    main()
