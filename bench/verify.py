"""`smsq verify` on 1,000,000 sealed events: speed and memory.

    uv run --group bench python -m bench.verify [--quick] [--events N]

The log is seeded with COPY as bench.replay seeds it (the trigger computes
each hash as the service's appends do), then sealed by the sealer in seals of
1,000 events. The verifier runs in a child process (bench/verify_child.py), as
smsq_auditor, so that its peak RSS is its own; its RSS is sampled at each
progress mark. It runs three times on the same log (once with --quick), after
a checkpoint has written the seeding out; the run of median wall time is
reported, with the rate of every run beside it.
"""

from __future__ import annotations

import asyncio
import json
import os
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
RUNS = 3  # of the verifier on the same log (1 with --quick)
APP = "smsq-bench-verify"


async def seal(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await catch_up(conn, Sealer(Ed25519PrivateKey.generate()), 1000)


def run_child(url: str) -> tuple[dict[str, float], float]:
    """The child's report, and the CPU seconds its server backends spent."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.verify_child", as_role(url, "smsq_auditor")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PGAPPNAME": APP},
    )
    spent: dict[int, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        while proc.poll() is None:
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP,)
            ).fetchall():
                try:
                    times = psutil.Process(pid).cpu_times()
                    spent[pid] = times.user + times.system
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            time.sleep(0.1)
    out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"verify failed ({proc.returncode})")
    return json.loads(out.strip().splitlines()[-1]), sum(spent.values())


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
        # The seeding's dirty pages written out now, not by a checkpoint
        # that would run beside the verifier.
        conn.execute("CHECKPOINT")
    runs = []
    for n in range(1 if quick else RUNS):
        print(f"verifying as smsq_auditor, run {n + 1} ({load_note()})", flush=True)
        runs.append(run_child(url))
    # The run of median wall time stands for all; the others are shown beside it.
    runs.sort(key=lambda run: run[0]["seconds"])
    report, server_cpu = runs[len(runs) // 2]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rate = report["events"] / report["seconds"]
    every = " / ".join(f"{r['events'] / r['seconds']:,.0f}" for r, _ in runs)
    # On a machine of its own, the verifier's processes and their server
    # backends run side by side (COPY streams while the client checks) and
    # share its cores. Under other load, wall time says more about the neighbours.
    cores = len(os.sched_getaffinity(0))
    bound = (report["cpu"] + server_cpu) / cores
    capacity = report["events"] / bound if bound else 0.0
    print(
        f"runs: {every} events/s; the median run's CPU: verifier {report['cpu']:.1f} s,"
        f" its server backends {server_cpu:.1f} s; on {cores} idle cores about"
        f" {capacity:,.0f} events/s"
    )
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
        [
            f"verify >= {GOAL:,} events/s (wall, median run)",
            f"{rate:,.0f}/s",
            verdict(rate >= GOAL),
        ],
        [
            f"verify >= {GOAL:,} events/s (CPU-bound estimate)",
            f"{capacity:,.0f}/s",
            verdict(capacity >= GOAL),
        ],
        [
            "memory flat (its processes' RSS after a tenth vs at the end)",
            f"{report['rss_first']:.0f} -> {report['rss_last']:.0f} MiB",
            verdict(report["rss_last"] <= report["rss_first"] * 1.1),
        ],
        ["a clean log verifies clean", str(report["faults"]), verdict(report["faults"] == 0)],
    ]
    print(table(["goal", "measured", "verdict"], goals))
    return 0 if report["faults"] == 0 else 1


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, help="events in the log (half of them messages)")
    args = parser.parse_args()
    stop_on_sigterm()
    with postgres(args.database_url) as server:
        header("Verify: the hash chain and the seals", server)
        raise SystemExit(bench(server, args.quick, args.events))


if __name__ == "__main__":
    main()
