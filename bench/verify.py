"""`smsq verify` on 1,000,000 sealed events: speed and memory.

    uv run --group bench python -m bench.verify [--quick] [--events N]

The log is seeded with COPY as bench.replay seeds it (the trigger computes
each hash as the service's appends do), then sealed by the sealer in seals of
1,000 events. The verifier runs in a child process, as smsq_auditor, so that
its peak RSS is its own; its RSS is sampled at each progress mark.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time

import psutil
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli.support import as_role
from bench.harness import (
    Server,
    arguments,
    header,
    load_note,
    postgres,
    stop_on_sigterm,
    table,
    verdict,
)
from bench.replay import seed_log
from projections.runner import catch_up
from projections.sealer import Sealer

GOAL = 200_000


def child(url: str) -> None:
    from projections.verify import verify

    me = psutil.Process()
    rss: list[float] = []
    started = time.perf_counter()
    report = verify(url, progress=lambda _: rss.append(me.memory_info().rss / 2**20))
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "events": report.events,
                "seals": report.seals,
                "faults": len(report.faults),
                "seconds": elapsed,
                "rss_first": rss[0],
                "rss_last": rss[-1],
            }
        )
    )


async def seal(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await catch_up(conn, Sealer(Ed25519PrivateKey.generate()), 1000)


def bench(server: Server, quick: bool, events: int | None) -> int:
    target = events or (100_000 if quick else 1_000_000)
    url = server.create("verify")
    started = time.perf_counter()
    written = seed_log(url, target // 2)
    seeded = time.perf_counter() - started
    print(f"seeded {written:,} events with COPY in {seeded:.1f} s ({written / seeded:,.0f}/s)")
    started = time.perf_counter()
    sealed = asyncio.run(seal(url))
    print(f"sealed {sealed:,} events in {time.perf_counter() - started:.1f} s")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE events")
    print(f"verifying as smsq_auditor ({load_note()})", flush=True)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.verify", "--child", as_role(url, "smsq_auditor")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rate = report["events"] / report["seconds"]
    print()
    print(
        table(
            ["events", "seals", "faults", "seconds", "events/s", "RSS first/last/peak MiB"],
            [
                [
                    report["events"],
                    report["seals"],
                    report["faults"],
                    report["seconds"],
                    rate,
                    f"{report['rss_first']:.0f} / {report['rss_last']:.0f} / {peak:.0f}",
                ]
            ],
        )
    )
    goals = [
        [f"verify >= {GOAL:,} events/s", f"{rate:,.0f}/s", verdict(rate >= GOAL)],
        [
            "memory flat (RSS at the first mark vs the end)",
            f"{report['rss_first']:.0f} -> {report['rss_last']:.0f} MiB",
            verdict(report["rss_last"] <= report["rss_first"] * 1.1),
        ],
        ["a clean log verifies clean", str(report["faults"]), verdict(report["faults"] == 0)],
    ]
    print(table(["goal", "measured", "verdict"], goals))
    return 0 if report["faults"] == 0 else 1


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
        return
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, help="events in the log (half of them messages)")
    args = parser.parse_args()
    stop_on_sigterm()
    with postgres(args.database_url) as server:
        header("Verify: the hash chain and the seals", server)
        raise SystemExit(bench(server, args.quick, args.events))


if __name__ == "__main__":
    main()
