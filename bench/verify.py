"""`smsq verify` on 1,000,000 sealed events: speed and memory.

    uv run --group bench python -m bench.verify [--quick] [--events N]

The log is seeded with COPY as bench.replay seeds it (the trigger computes
each hash as the service's appends do), then sealed by the sealer in seals of
1,000 events. The verifier runs in a child process (bench/verify_child.py), as
smsq_auditor, so that its peak RSS is its own; its RSS is sampled at each
progress mark. It runs three times on the same log (once with --quick), after
a checkpoint has written the seeding out; the run of median wall time is
reported, with the rate of every run beside it.

Then what two cores can reach. Any verifier of this log spends, for each
event, the server's COPY of the values its hash covers, the receipt of that
row, one SHA-256 and the decoding of its data: each is measured on the same
log, one at a time (the server's COPY read and dropped by one client; the
hash and the decoding on the first rows, held in memory). Their sum is the
floor, an estimate measured alone, not a bound. At the goal's rate the cores
give each event `cores / 200,000` of a second of CPU: the budget. What it
leaves over the floor is all that the verifier's own work may cost (the
hash's encoding, the chain's links, the seals, the faults) for the goal to
be met on this machine.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import psutil
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.cli.support import as_role
from bench.chain import cpu_seconds
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
from projections.verify_part import END, EVENTS, KINDS, columns

GOAL = 200_000
RUNS = 3  # of the verifier on the same log (1 with --quick)
APP = "smsq-bench-verify"
SAMPLE = 100_000  # rows held in memory to time the hash and the decoding


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


class Floor(NamedTuple):
    """CPU an event, in µs, that any verifier of this log spends, each part
    measured alone: an estimate, not a bound."""

    server: float  # the server's COPY of the values the hash covers
    receive: float  # the client's receipt of each row
    sha256: float  # one SHA-256 of a row's bytes (about the hash's input)
    decode: float  # the event's data decoded as its type

    @property
    def total(self) -> float:
        return self.server + self.receive + self.sha256 + self.decode


def _per_row(work: Callable[[], object], rows: int) -> float:
    """The CPU `work` takes, in µs a row."""
    started = time.process_time()
    work()
    return (time.process_time() - started) * 1e6 / rows


def measure_floor(url: str) -> Floor:
    """Each part of the floor, measured alone on the log at `url` (see the module's
    doc), whose server runs on this machine (its backend's CPU is read here)."""
    bounds = {"tx": 0, "position": 0, "to_tx": END[0], "to_position": END[1]}
    rows: list[bytes] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET enable_sort = off")  # the log in index order, as the verifier reads it
        conn.execute("SET max_parallel_workers_per_gather = 0")  # one backend does it all
        backend = psutil.Process(conn.info.backend_pid)
        server, client, count = cpu_seconds(backend), time.process_time(), 0
        with conn.cursor() as cur, cur.copy(EVENTS, bounds) as copy:
            for row in copy:
                line = bytes(row)
                if count < SAMPLE:
                    rows.append(line)
                count += 1
        server = (cpu_seconds(backend) - server) * 1e6 / count
        client = (time.process_time() - client) * 1e6 / count
    sha256 = hashlib.sha256
    cols = [columns(line) for line in rows]
    data = [(kind[0], c[7]) for c in cols if (kind := KINDS.get((c[5], c[6]))) and kind[0]]

    def hash_all() -> None:
        for line in rows:
            sha256(line).hexdigest()

    def decode_all() -> None:
        for decoder, value in data:
            decoder.decode(value)

    return Floor(server, client, _per_row(hash_all, len(rows)), _per_row(decode_all, len(data)))


def reach(cores: int, spent: float, floor: Floor) -> tuple[list[str], list[list[object]]]:
    """The CPU an event spent (the verifier's and its server backends'), the
    floor and what is spent over it; the budget at the goal's rate on `cores`,
    and what that leaves over the floor (below zero: out of this machine's
    reach, whatever the verifier's own work costs)."""
    budget = cores * 1e6 / GOAL
    headers = [
        "spent µs/event",
        "floor µs/event",
        "over the floor",
        f"budget at {GOAL:,}/s on {cores} cores",
        "budget over the floor",
    ]
    return headers, [[spent, floor.total, spent - floor.total, budget, budget - floor.total]]


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
    if server.embedded:
        floor = measure_floor(url)
        print(
            f"the floor, each part alone: the server's COPY {floor.server:.2f} µs an event,"
            f" receiving its row {floor.receive:.2f}, SHA-256 {floor.sha256:.2f},"
            f" decoding {floor.decode:.2f}"
        )
        spent = (report["cpu"] + server_cpu) * 1e6 / report["events"]
        print(table(*reach(cores, spent, floor)))
    else:  # its backend's CPU is read from this machine
        print("the floor: measured only on the embedded server, on this machine")
    return 0 if report["faults"] == 0 else 1


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, help="events in the log (half of them messages)")
    args = parser.parse_args()
    if args.events is not None and args.events < 2:
        parser.error("--events: 2 at least (a message is two events)")
    stop_on_sigterm()
    with postgres(args.database_url) as server:
        header("Verify: the hash chain and the seals", server)
        raise SystemExit(bench(server, args.quick, args.events))


if __name__ == "__main__":
    main()
