"""What access control, request logging and metrics cost on the hot path.

    uv run python bench/overhead.py --seconds 10 --concurrency 32

Starts `smsq serve` on an embedded PostgreSQL of its own (a temporary
directory), then drives `POST /messages` from many distinct senders with a
minimal keep-alive HTTP/1.1 client (so the client's own cost stays small on a
small machine), first with the service open (loopback, no key made), then
with a key, and prints requests per second and latency percentiles for each.
Then it times GET /metrics, in both forms. Run it from another checkout
(PYTHONPATH=that/checkout) to compare against a version without these layers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import psycopg

from api.runtime.embedded import embedded_server
from tests.support.servers import free_port, smsq_process, wait_ready

# One sequence for every run of the process: a sender never repeats within the
# rate window, so every request is a new message (201), none a duplicate or a 429.
SENDERS = itertools.count()
# Area codes whose every 555-XXXX number libphonenumber holds valid: 80,000 senders.
AREAS = ("202", "212", "305", "415", "512", "617", "718", "206")


def request(sender: int, token: str | None) -> bytes:
    body = json.dumps(
        {
            "from": f"+1{202 + sender // 10_000 % 700}555{sender % 10_000:04d}",
            "to": "+447911123456",
            "message": "bench",
        }
    ).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST /messages HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


def cpu_seconds(pid: int) -> float:
    """User and system CPU of `smsq serve` and its workers (not of PostgreSQL)."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        if "postgres" in proc.name():
            continue
        times = proc.cpu_times()
        total += times.user + times.system
    return total


async def drive(
    port: int, seconds: float, concurrency: int, token: str | None, pid: int
) -> dict[str, float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                # A fresh sender each time: the rate limit is not what is measured.
                payload = request(next(SENDERS), token)
                started = time.perf_counter()
                writer.write(payload)
                status = await read_response(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started, cpu = time.monotonic(), cpu_seconds(pid)
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "non_201": sum(n for s, n in statuses.items() if s != 201),
        # The server's own CPU per request: unlike the rate, barely moved by
        # whatever else the machine is doing.
        "cpu_us": 1e6 * cpu / len(latencies),
    }


async def time_get(port: int, path: str, headers: str, count: int = 200) -> float | None:
    """Median milliseconds of `count` sequential GETs; None where the route is absent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{headers}\r\n".encode()
    took = []
    for _ in range(count):
        started = time.perf_counter()
        writer.write(raw)
        if await read_response(reader) != 200:
            return None
        took.append(time.perf_counter() - started)
    writer.close()
    return 1000 * statistics.median(took)


def make_key(url: str) -> str | None:
    try:
        from api.runtime.keys import create_key
    except ImportError:  # a checkout without keys: nothing to compare
        return None

    async def made() -> str:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return (await create_key(conn, ["write", "metrics"])).token

    return asyncio.run(made())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, embedded_server(Path(tmp), "bench") as url:
        port = free_port()
        env = {
            "SMSQ_DATABASE_URL": url,
            "SMSQ_PORT": str(port),
            "SMSQ_WORKERS": str(args.workers),
            "SMSQ_LOG_LEVEL": os.environ.get("SMSQ_LOG_LEVEL", "INFO"),
        }
        log = Path(tmp) / "serve.log"
        rows = []
        with smsq_process(["serve"], env, log) as proc:
            wait_ready(f"http://127.0.0.1:{port}", proc, log, 60)
            asyncio.run(drive(port, 2, args.concurrency, None, proc.pid))  # warm up
            rows.append(
                ("open", asyncio.run(drive(port, args.seconds, args.concurrency, None, proc.pid)))
            )
            token = make_key(url)
            if token:
                time.sleep(6)  # the open-or-closed answer is remembered for up to 5 s
                rows.append(
                    (
                        "with a key",
                        asyncio.run(drive(port, args.seconds, args.concurrency, token, proc.pid)),
                    )
                )
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            metrics = {
                "text": asyncio.run(time_get(port, "/metrics", auth)),
                "json": asyncio.run(
                    time_get(port, "/metrics", auth + "Accept: application/json\r\n")
                ),
                "healthz": asyncio.run(time_get(port, "/healthz", "")),
            }
        print(f"{'mode':<12} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-201':>8} {'CPU us':>8}")
        for mode, r in rows:
            print(
                f"{mode:<12} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
                f" {r['non_201']:>8.0f} {r['cpu_us']:>8.0f}"
            )
        timed = [f"{k} {v:.2f}" for k, v in metrics.items() if v is not None]
        print("median of 200 sequential GETs, ms: " + ", ".join(timed))


if __name__ == "__main__":
    main()
