"""Reads against the log: a probe for answers older than an earlier one, and what reads cost.

    uv run python -m bench.consistency [--quick] [--messages 1280] [--concurrency 32]
                                       [--smsq PATH]

Starts `smsq serve` with its defaults on a database of its own (see
bench/harness.py). The probe posts messages `--concurrency` at a time; each
is then read with `GET /messages/{id}` every few milliseconds from its 201
until it is processed, and every tenth gets three images attached one after
another. A regression is an answer with an older status or fewer images than
an answer before it, fewer images than the uploads already answered 201, or
`processed` without what processing found. Then, on the idle service, it
times single-message reads and list reads with and without a consistency
token. `--smsq` runs another build's `smsq` (an older checkout's, to compare
in one sitting); the token reads are skipped when it gives no token.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
from psycopg import sql

from bench.harness import (
    arguments,
    header,
    percentile,
    postgres,
    stop_on_sigterm,
    table,
    verdict,
)
from domain.events import stream_of
from projections.messages import COLUMNS, GET_MESSAGE
from tests.support.images import png
from tests.support.phones import random_phone
from tests.support.servers import SMSQ, serving

TOKEN = "Consistency-Token"
RANK = {"received": 0, "stored": 1, "processed": 2}
READ_EVERY = 0.003


class Probe:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.regressions: list[str] = []
        self.reads = 0
        self.uploads: dict[str, int] = {}
        self.ids: list[str] = []

    async def follow(self, message_id: str, images: bool) -> None:
        rank, count = 0, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answered = self.uploads.get(message_id, 0)
            message = (await self.client.get(f"/messages/{message_id}")).json()
            self.reads += 1
            now_rank, now_count = RANK[message["status"]], message["media_count"]
            if now_rank < rank or now_count < count or now_count < answered:
                self.regressions.append(
                    f"{message_id}: {message['status']} with {now_count} images after"
                    f" {list(RANK)[rank]} with {count}, {answered} uploads answered"
                )
            if now_rank == 2 and message.get("encoding") is None:
                self.regressions.append(f"{message_id}: processed without its encoding")
            rank, count = max(rank, now_rank), max(count, now_count)
            if rank == 2 and (not images or self.uploads.get(message_id) == 3):
                return
            await asyncio.sleep(READ_EVERY)
        self.regressions.append(f"{message_id}: not processed within 60 s")

    async def attach(self, message_id: str, seed: int) -> None:
        for k in range(3):
            files = [("file", ("image.png", png(seed=seed * 3 + k, size=(16, 16)), "image/png"))]
            response = await self.client.post(f"/messages/{message_id}/media", files=files)
            assert response.status_code == 201, response.text
            self.uploads[message_id] = k + 1

    async def one(self, i: int) -> None:
        body = {"from": random_phone(), "to": "+447911123456", "message": f"probe {i}"}
        response = await self.client.post("/messages", json=body)
        assert response.status_code == 201, response.text
        message_id = response.json()["id"]
        self.ids.append(message_id)
        images = i % 10 == 0
        work = [self.follow(message_id, images)]
        if images:
            work.append(self.attach(message_id, i))
        await asyncio.gather(*work)

    async def run(self, messages: int, concurrency: int) -> None:
        slots = asyncio.Semaphore(concurrency)

        async def limited(i: int) -> None:
            async with slots:
                await self.one(i)

        await asyncio.gather(*(limited(i) for i in range(messages)))


async def timed(client: httpx.AsyncClient, requests: list[httpx.Request]) -> list[float]:
    """Milliseconds per request, one at a time (the idle service's own cost)."""
    spent = []
    for request in requests:
        started = time.perf_counter()
        response = await client.send(request)
        spent.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return spent


async def read_costs(client: httpx.AsyncClient, ids: list[str], n: int) -> list[list[Any]]:
    rng = random.Random(1)
    sender = random_phone()
    written = await client.post(
        "/messages", json={"from": sender, "to": "+447911123456", "message": "token"}
    )
    token = written.headers.get(TOKEN)
    one = [client.build_request("GET", f"/messages/{rng.choice(ids)}") for _ in range(n)]
    listed = [client.build_request("GET", "/messages", params={"from": sender})] * n
    cases = [("GET /messages/{id}", one), ("GET /messages?from=…", listed)]
    if token is not None:
        with_token = [
            client.build_request(
                "GET", "/messages", params={"from": sender}, headers={TOKEN: token}
            )
        ] * n
        cases.append(("GET /messages?from=… with a token", with_token))
    await timed(client, one[: n // 5])  # warm-up
    rows = []
    for label, requests in cases:
        ms = await timed(client, requests)
        rows.append([label, statistics.median(ms), percentile(ms, 99)])
    return rows


# What a single-message read cost before reads were checked against the log:
# the row alone, answered whenever it existed.
_ROW_ALONE = sql.SQL("SELECT {} FROM sms_messages AS m WHERE m.id = %(id)s").format(COLUMNS)


async def statement_costs(url: str, ids: list[str], n: int) -> list[list[Any]]:
    """The single-message read's statement against the row-alone read, alternated
    on one connection (both prepared, as the server runs them), in milliseconds."""
    rng = random.Random(2)
    spent: dict[str, list[float]] = {"row alone (before)": [], "row + stream's place (now)": []}
    statements = {"row alone (before)": _ROW_ALONE, "row + stream's place (now)": GET_MESSAGE}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for i in range(n + n // 5):
            message_id = UUID(rng.choice(ids))
            params = {"id": message_id, "stream": stream_of(message_id)}
            for label, statement in statements.items():
                started = time.perf_counter()
                await (await conn.execute(statement, params, prepare=True)).fetchall()
                if i >= n // 5:  # after a warm-up
                    spent[label].append((time.perf_counter() - started) * 1000)
    return [[label, statistics.median(ms), percentile(ms, 99)] for label, ms in spent.items()]


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1280)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reads", type=int, default=2000, help="timed reads per kind")
    parser.add_argument("--smsq", default=SMSQ, help="the smsq program to serve with")
    args = parser.parse_args()
    stop_on_sigterm()
    messages = 160 if args.quick else args.messages
    with tempfile.TemporaryDirectory() as tmp, postgres(args.database_url) as pg:
        header("Reads against the log", pg)
        env = {
            # Not migrated here: `smsq serve` migrates it, so another build can run.
            "SMSQ_DATABASE_URL": pg.create("consistency", migrated=False),
            "SMSQ_DATA_DIR": str(Path(tmp) / "data"),
            "SMSQ_LOG_LEVEL": "WARNING",
        }
        with serving(env, Path(tmp) / "serve.log", program=args.smsq) as url:

            async def measure() -> tuple[Probe, list[list[Any]]]:
                limits = httpx.Limits(max_connections=args.concurrency * 3)
                async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
                    probe = Probe(client)
                    await probe.run(messages, args.concurrency)
                    return probe, await read_costs(client, probe.ids, args.reads)

            probe, costs = asyncio.run(measure())
            statements = asyncio.run(
                statement_costs(env["SMSQ_DATABASE_URL"], probe.ids, args.reads)
            )
    print(
        f"{messages} messages, {args.concurrency} at a time; {probe.reads:,} reads every"
        f" {READ_EVERY * 1000:g} ms; {len(probe.uploads)} messages given 3 images each"
    )
    for line in probe.regressions[:20]:
        print("  regression:", line)
    print(f"regressions: {len(probe.regressions)}", verdict(not probe.regressions))
    print()
    print(f"On the idle service, {args.reads} reads each, one at a time:")
    print(table(["", "p50 ms", "p99 ms"], costs))
    print()
    print(f"The single-message read's SQL, {args.reads} of each, alternated on one connection:")
    print(table(["", "p50 ms", "p99 ms"], statements))


if __name__ == "__main__":
    main()
