"""Lifecycle at light load: from the 201 to visible in GET /messages, and to processed.

    uv run python -m bench.lifecycle [--messages 300] [--rate 10]

Starts `smsq serve` (projectors and processing stage in-process, as by
default) on a database of its own (see bench/harness.py).
Sends one message at a time at a steady light rate, each from a sender of
its own, and polls over HTTP, as a client would: `GET /messages?from=…`
until the message is listed (stored: folded into the read model), then
`GET /messages/{id}` until its status is `processed`.
The contract's promise: under light load, processed within a second.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import (
    arguments,
    header,
    percentile,
    postgres,
    stop_on_sigterm,
    table,
    verdict,
)
from tests.support.phones import random_phone
from tests.support.servers import serving

POLL = 0.002


async def until(check: httpx.Request, client: httpx.AsyncClient, done: str) -> float:
    """The moment the answer to `check` first contains `done`."""
    while True:
        if done in (await client.send(check)).text:
            return time.perf_counter()
        await asyncio.sleep(POLL)


async def follow(client: httpx.AsyncClient, sender: str) -> tuple[float, float]:
    body = {"from": sender, "to": "+447911123456", "message": "light load"}
    response = await client.post("/messages", json=body)
    acknowledged = time.perf_counter()
    assert response.status_code == 201, response.text
    message_id = response.json()["id"]
    listed = client.build_request("GET", "/messages", params={"from": sender})
    stored = await until(listed, client, message_id)
    one = client.build_request("GET", f"/messages/{message_id}")
    processed = await until(one, client, '"status":"processed"')
    return stored - acknowledged, processed - acknowledged


async def measure(url: str, messages: int, rate: float) -> list[tuple[float, float]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        pending = []
        for _ in range(messages):
            pending.append(asyncio.create_task(follow(client, random_phone())))
            await asyncio.sleep(1 / rate)
        return await asyncio.gather(*pending)


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    args = parser.parse_args()
    stop_on_sigterm()
    messages = 40 if args.quick else args.messages
    with tempfile.TemporaryDirectory() as tmp, postgres(args.database_url) as pg:
        header("Lifecycle at light load", pg)
        env = {
            "SMSQ_DATABASE_URL": pg.create("lifecycle"),
            "SMSQ_DATA_DIR": str(Path(tmp) / "data"),
            "SMSQ_LOG_LEVEL": "WARNING",
        }
        with serving(env, Path(tmp) / "serve.log") as url:
            asyncio.run(measure(url, 20, args.rate))  # warm-up
            results = asyncio.run(measure(url, messages, args.rate))
    rows = []
    for label, values in (
        ("201 → listed by GET /messages (stored)", [r[0] for r in results]),
        ("201 → status processed", [r[1] for r in results]),
    ):
        ms = [v * 1000 for v in values]
        rows.append(
            [
                label,
                statistics.median(ms),
                percentile(ms, 99),
                max(ms),
                sum(v > 1 for v in values),
            ]
        )
    print(f"{messages} messages at {args.rate:g}/s, polled every {POLL * 1000:g} ms over HTTP")
    print(table(["", "p50 ms", "p99 ms", "max ms", "over 1 s"], rows))
    print()
    print("processed within a second:", verdict(all(r[1] <= 1 for r in results)))


if __name__ == "__main__":
    main()
