"""Soak: mixed load for a long while, sampling what could grow without bound.

    uv run python -m bench.soak --minutes 10

Starts `smsq serve` on an embedded PostgreSQL of its own (a temporary
directory: the user's data are never touched), drives ingest, queries and,
when the server offers them, image uploads at a steady rate, and every
`--every` seconds samples the server's memory (RSS of the whole process tree),
its open database connections, the projection lag and the request tally.
At the end it compares the first and the last third of the run, and checks
that every message answered 201 reached the read model as processed, with
nothing folded twice. Exits non-zero if anything grew, failed or was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import psycopg

from api.runtime.embedded import embedded_server
from bench.harness import stop_on_sigterm
from tests.support.consistency import assert_folded_once
from tests.support.phones import random_phone
from tests.support.servers import free_port, smsq_process, wait_ready


def png(seed: int) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (32, 32), (seed % 256, (seed // 256) % 256, 7))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class Load:
    def __init__(self, url: str, uploads: bool) -> None:
        self.url = url
        self.uploads = uploads
        self.tally: Counter[str] = Counter()
        self.created: list[str] = []
        self.senders = [random_phone() for _ in range(2000)]

    async def one(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        roll = rng.random()
        if roll < 0.55 or not self.created:
            body = {"from": rng.choice(self.senders), "to": random_phone(), "message": "soak"}
            response = await client.post("/messages", json=body)
            if response.status_code == 201:
                self.created.append(response.json()["id"])
        elif roll < 0.75:
            response = await client.get("/messages", params={"from": rng.choice(self.senders)})
        elif roll < 0.9 or not self.uploads:
            response = await client.get(f"/messages/{rng.choice(self.created[-500:])}")
        else:
            message = rng.choice(self.created[-500:])
            files = {"file": ("soak.png", png(rng.randrange(1 << 16)), "image/png")}
            response = await client.post(f"/messages/{message}/media", files=files)
        self.tally[str(response.status_code)] += 1

    async def run(self, rate: float, until: float, workers: int = 16) -> None:
        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
                while time.monotonic() < until:
                    started = time.monotonic()
                    try:
                        await self.one(client, rng)
                    except httpx.HTTPError as error:
                        self.tally[f"error:{type(error).__name__}"] += 1
                    pause = workers / rate - (time.monotonic() - started)
                    if pause > 0:
                        await asyncio.sleep(pause)

        await asyncio.gather(*(worker(i) for i in range(workers)))


def tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def sample(db: str, pid: int) -> tuple[float, int, int]:
    with psycopg.connect(db, autocommit=True) as conn:
        connections = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchone()
        lag = conn.execute(
            "SELECT coalesce(max((SELECT max(position) FROM events) - position), 0)"
            " FROM projection_checkpoints"
        ).fetchone()
    assert connections is not None
    assert lag is not None
    return tree_rss(pid) / 2**20, int(connections[0]), int(lag[0])


async def soak(minutes: float, rate: float, every: float) -> int:
    with tempfile.TemporaryDirectory() as tmp, embedded_server(Path(tmp)) as db:
        port = free_port()
        env = {
            "SMSQ_DATABASE_URL": db,
            "SMSQ_DATA_DIR": str(Path(tmp) / "data"),  # uploaded images stay in the temporary dir
            "SMSQ_PORT": str(port),
            "SMSQ_LOG_LEVEL": "WARNING",
        }
        log = Path(tmp) / "serve.log"
        with smsq_process(["serve"], env, log) as server:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, server, log, 60)
            async with httpx.AsyncClient(base_url=url) as client:
                paths = (await client.get("/schema/openapi.json")).json()["paths"]
            load = Load(url, uploads="/messages/{message_id}/media" in paths)
            until = time.monotonic() + minutes * 60
            driving = asyncio.create_task(load.run(rate, until))
            rows: list[tuple[float, float, int, int, int]] = []
            print(f"{'t (s)':>7} {'RSS MiB':>8} {'db conns':>8} {'lag':>6} {'requests':>9}  tally")
            started = time.monotonic()
            while not driving.done():
                await asyncio.sleep(min(every, max(0.1, until - time.monotonic())))
                rss, conns, lag = await asyncio.to_thread(sample, db, server.pid)
                total = sum(v for k, v in load.tally.items() if k.isdigit())
                rows.append((time.monotonic() - started, rss, conns, lag, total))
                print(
                    f"{rows[-1][0]:7.0f} {rss:8.1f} {conns:8d} {lag:6d} {total:9d}  "
                    f"{dict(load.tally)}",
                    flush=True,
                )
            await driving
            try:
                await assert_folded_once(db, load.created, within=60)
                lost = None
            except AssertionError as error:
                lost = str(error) or "the read model disagrees with the log"
    return report(rows, load.tally, load.uploads, len(load.created), lost)


def report(
    rows: list[tuple[float, float, int, int, int]],
    tally: Counter[str],
    uploads: bool,
    created: int,
    lost: str | None,
) -> int:
    third = max(1, len(rows) // 3)
    first, last = rows[:third], rows[-third:]
    rss_first = statistics.mean(r[1] for r in first)
    rss_last = statistics.mean(r[1] for r in last)
    elapsed = rows[-1][0] if rows else 0
    print()
    print(
        f"requests: {rows[-1][4] if rows else 0} in {elapsed:.0f} s "
        f"({(rows[-1][4] / elapsed) if elapsed else 0:.0f}/s), uploads: {uploads}"
    )
    server_errors = sum(v for k, v in tally.items() if k.startswith("5"))
    client_errors = sum(v for k, v in tally.items() if k.startswith("error"))
    print("by status:", ", ".join(f"{k}: {v}" for k, v in sorted(tally.items())))
    print(f"5xx: {server_errors}, requests that got no answer: {client_errors}")
    print(
        f"messages acknowledged (201): {created}; "
        + (f"LOST OR FOLDED TWICE: {lost}" if lost else "all in the read model, processed once")
    )
    print(
        f"server RSS: first third {rss_first:.1f} MiB, last third {rss_last:.1f} MiB "
        f"({100 * (rss_last - rss_first) / rss_first:+.1f} %)"
    )
    print(
        f"database connections: max {max(r[2] for r in rows)}, "
        f"last {rows[-1][2]}; projection lag: max {max(r[3] for r in rows)} events, "
        f"last {rows[-1][3]}"
    )
    conns_first, conns_last = max(r[2] for r in first), max(r[2] for r in last)
    bad = (
        server_errors > 0
        or client_errors > 0
        or lost is not None
        or rss_last > rss_first * 1.25
        or conns_last > conns_first + 2
    )
    print("verdict:", "something grew or failed" if bad else "steady")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    args = parser.parse_args()
    stop_on_sigterm()
    os.environ.pop("SMSQ_DATABASE_URL", None)
    raise SystemExit(asyncio.run(soak(args.minutes, args.rate, args.every)))


if __name__ == "__main__":
    main()
