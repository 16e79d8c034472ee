"""Two builds, or two settings, side by side: their runs alternate, pair by pair.

    uv run --group bench python -m bench.pair [--a-dir DIR] [--b-dir DIR]
        [--a-env K=V,...] [--b-env K=V,...]
        [--pairs N] [--seconds S] [--rate R]

On a machine whose speed drifts (a shared virtual machine's moved by 20 %
within minutes), two benchmarks run minutes apart compare the machine, not the
code. Here two `smsq serve`s run at once, each on a database of its own (of
one PostgreSQL, whose CPU a side is charged includes the idle side's few
polls), and take turns: A then B, B then A, and so on. Each turn is a maximum run (wrk,
closed loop, as in `bench.ingest`), the projectors' backlog folded, then an
open-loop run at a fixed rate (as `bench.ingest`'s half load) with the
projection lag watched. The two runs of a pair are seconds apart, so their
ratio is the figure; the median of the pairs' ratios is reported.

A build is a checkout with its own environment (`uv sync --group bench` in
it; `--a-dir`, `--b-dir`, each this one by default); settings are SMSQ_*
variables for one side (`--b-env SMSQ_BATCH_CONCURRENCY=1`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

from bench.datagen import phones
from bench.harness import (
    Server,
    arguments,
    load_note,
    postmaster,
    run,
    table,
    tree_cpu_seconds,
)
from bench.ingest import (
    DEFAULT_WORKERS,
    Watch,
    caught_up,
    half_load,
    maximum,
    pct,
    senders_file,
    served,
)

HERE = Path(__file__).resolve().parent.parent
SIDES = "AB"
SECONDS = 5  # a turn's run, without --seconds


class Turn(NamedTuple):
    rps: float
    app_us: float
    db_us: float
    p50_ms: float
    p99_ms: float
    lag_p99_ms: float
    open_cpu_us: float
    """App and PostgreSQL CPU per request during the open-loop run."""
    loop_us: float | None
    """CPU per request of the worker's event-loop thread at the maximum (None: not read)."""
    loop_waits: float | None
    """That thread's waits per request at the maximum (None: not read)."""


class Side(NamedTuple):
    url: str
    base: str
    pid: int
    database: int | None


def settings(text: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    if any(len(p) != 2 or not p[0].startswith("SMSQ_") for p in pairs):
        raise SystemExit(f"settings are SMSQ_NAME=value, comma-separated: {text!r}")
    return {p[0]: p[1] for p in pairs}


class Build(NamedTuple):
    """One side of a comparison: a checkout with its own environment, and settings."""

    directory: Path
    env: dict[str, str]

    @property
    def smsq(self) -> str:
        return str(self.directory / ".venv" / "bin" / "smsq")

    @property
    def name(self) -> str:
        return " ".join([str(self.directory), *(f"{k}={v}" for k, v in self.env.items())])


def side_arguments(parser: argparse.ArgumentParser, seconds: float) -> None:
    """The options naming the two sides, and the pairs and run length of their turns."""
    parser.add_argument("--a-dir", help="checkout of build A (default: this one)")
    parser.add_argument("--b-dir", help="checkout of build B (default: this one)")
    parser.add_argument("--a-env", default="", help="SMSQ_* settings of A, comma-separated")
    parser.add_argument("--b-env", default="", help="SMSQ_* settings of B, comma-separated")
    parser.add_argument("--pairs", type=int, help="pairs of turns (default 6, 2 with --quick)")
    parser.add_argument(
        "--seconds", type=float, help=f"length of each run (default {seconds:g}, 2 with --quick)"
    )


def parse_sides(parser: argparse.ArgumentParser, seconds: float) -> Any:
    """Parse, filling in the pairs and run length the options left out."""
    args = parser.parse_args()
    args.pairs = args.pairs or (2 if args.quick else 6)
    args.seconds = args.seconds or (2 if args.quick else seconds)
    return args


def builds(args: Any) -> tuple[Build, Build]:
    a, b = (
        Build(Path(d).resolve() if d else HERE, settings(e))
        for d, e in ((args.a_dir, args.a_env), (args.b_dir, args.b_env))
    )
    return a, b


def cpu(side: Side) -> float:
    """CPU seconds of the side's server and (when local) its PostgreSQL so far."""
    database = tree_cpu_seconds(side.database) if side.database is not None else 0.0
    return tree_cpu_seconds(side.pid) + database


def turn(
    side: Side, senders: tuple[Path, int], rate_senders: list[str], args: Any
) -> tuple[Turn, int]:
    run, offset = maximum(side.base, senders, args.seconds, 1, (side.pid, side.database), side.url)
    caught_up(side.url)
    before = cpu(side)
    watch = Watch(side.url)
    result, _ = asyncio.run(half_load(side.base, args.rate, args.seconds, rate_senders, watch))
    used = cpu(side) - before
    caught_up(side.url)
    answered = max(1, len(result.latencies))
    loop = run.loop
    return (
        Turn(
            run.run.rps,
            run.us_a_request(run.app_cpu),
            run.us_a_request(run.db_cpu or 0.0),
            result.percentile(50) * 1e3,
            result.percentile(99) * 1e3,
            pct(watch.lags, 99) * 1e3,
            used / answered * 1e6,
            None if loop is None else run.us_a_request(loop.cpu),
            None if loop is None else loop.waits / run.run.requests,
        ),
        offset,
    )


def summary(names: Sequence[str], turns: dict[int, list[Turn]]) -> str:
    def median(i: int, field: str) -> float:
        return float(statistics.median(getattr(t, field) for t in turns[i]))

    rows = [
        [
            f"{SIDES[i]}: {names[i]}",
            f"{median(i, 'rps'):,.0f}",
            f"{median(i, 'app_us'):,.0f}",
            loop_median(turns[i], "loop_us", "{:,.0f}"),
            loop_median(turns[i], "loop_waits", "{:.2f}"),
            f"{median(i, 'db_us'):,.0f}",
            f"{median(i, 'p50_ms'):.1f}",
            f"{median(i, 'p99_ms'):.1f}",
            f"{median(i, 'lag_p99_ms'):.0f}",
            f"{median(i, 'open_cpu_us'):,.0f}",
        ]
        for i in (0, 1)
    ]
    return table(
        [
            "side (medians)",
            "max req/s",
            "app µs/req",
            "event loop µs/req",
            "loop waits/req",
            "PostgreSQL µs/req",
            "p50 ms",
            "p99 ms",
            "lag p99 ms",
            "CPU µs/req",
        ],
        rows,
    )


def loop_median(turns: list[Turn], field: str, form: str) -> str:
    """The median of a loop reading over `turns`, formatted; n/a unless each was read."""
    values = [getattr(t, field) for t in turns]
    if any(v is None for v in values):
        return "n/a"
    return form.format(statistics.median(values))


def ratios(turns: dict[int, list[Turn]], field: str) -> str:
    each = [getattr(b, field) / getattr(a, field) for a, b in zip(turns[0], turns[1], strict=True)]
    return " / ".join(f"{r:.2f}" for r in each) + f", median {statistics.median(each):.2f}x"


def bench(server: Server, args: Any, logs: Path) -> int:
    compared = builds(args)
    # A new sender for every open-loop request: none meets the rate limit.
    per_run = int(args.rate * args.seconds) + 1
    rate_senders = phones(2 * args.pairs * per_run, seed=2)
    with ExitStack() as stack:
        sides = []
        for i, build in enumerate(compared):
            # Each build migrates its own database as it starts.
            url = server.create(f"pair_{SIDES[i].lower()}", migrated=False)
            where = logs / SIDES[i]
            where.mkdir()
            base, pid = stack.enter_context(
                served("smsq", url, args.workers, where, build.env, smsq=build.smsq)
            )
            sides.append(Side(url, base, pid, postmaster(url)))
        senders = senders_file(logs)
        offsets = [0, 0]
        turns: dict[int, list[Turn]] = {0: [], 1: []}
        for number in range(args.pairs):
            for i in (0, 1) if number % 2 == 0 else (1, 0):
                start = (2 * number + i) * per_run
                mine = rate_senders[start : start + per_run]
                measured, offsets[i] = turn(sides[i], (senders, offsets[i]), mine, args)
                turns[i].append(measured)
                print(
                    f"pair {number + 1}, {SIDES[i]}: max {measured.rps:,.0f} req/s"
                    f" ({measured.app_us:,.0f} + {measured.db_us:,.0f} µs; loop"
                    f" {loop_median([measured], 'loop_us', '{:,.0f}')} µs,"
                    f" {loop_median([measured], 'loop_waits', '{:.2f}')} waits);"
                    f" at {args.rate:,.0f}/s p50 {measured.p50_ms:.1f} ms,"
                    f" p99 {measured.p99_ms:.1f} ms, lag p99 {measured.lag_p99_ms:.0f} ms"
                    f" ({load_note()})",
                    flush=True,
                )
    print()
    print(summary([b.name for b in compared], turns))
    print()
    print(f"B / A, pair by pair: maximum {ratios(turns, 'rps')}")
    print(f"  CPU per request at the maximum, app: {ratios(turns, 'app_us')}")
    if all(t.loop_us is not None for t in turns[0] + turns[1]):
        print(f"  of it, the event loop's: {ratios(turns, 'loop_us')}")
    print(f"  CPU per request at {args.rate:,.0f}/s: {ratios(turns, 'open_cpu_us')}")
    print(f"  p99 at {args.rate:,.0f}/s: {ratios(turns, 'p99_ms')}")
    print(f"after the run: {load_note()}")
    return 0


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    side_arguments(parser, SECONDS)
    parser.add_argument("--rate", type=float, default=800, help="open-loop requests a second")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="granian workers")
    args = parse_sides(parser, SECONDS)
    run("Two builds or settings, side by side", args, bench)


if __name__ == "__main__":
    main()
