"""Where the time goes: py-spy on a running server, summarised as a table.

py-spy samples a process from outside (no code change, little overhead with
--nonblocking). The raw output is in the collapsed-stack format that
speedscope (https://www.speedscope.app) and flamegraph.pl open as is; the
summary printed here names the functions holding most samples, inclusive
(anywhere on the stack) and self (at the top of it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.harness import load_note, table


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        sys.exit("py-spy is needed for --profile: `uv sync --group bench` installs it")
    return found


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling `pid` and its children for `seconds` into `out` (raw format)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "200",
            "--nonblocking",
            "--nolineno",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _frame(text: str) -> str:
    # "fold (domain/message.py)" → "domain/message.py:fold"
    name, _, where = text.partition(" (")
    where = where.rstrip(")")
    return f"{where}:{name}" if where else name


def summary(raw: Path, top: int = 15, keep: tuple[str, ...] = ()) -> str:
    """The functions on most sampled stacks; `keep` limits to frames containing these."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "(no samples)"

    def wanted(name: str) -> bool:
        return not keep or any(k in name for k in keep)

    rows = [
        [name, f"{100 * n / total:.1f} %", f"{100 * own[name] / total:.1f} %"]
        for name, n in inclusive.most_common()
        if wanted(name)
    ][:top]
    self_rows = [[name, f"{100 * n / total:.1f} %"] for name, n in own.most_common(top)]
    return (
        f"{total:,} samples\n"
        + table(["function (inclusive)", "inclusive", "self"], rows)
        + "\n\n"
        + table(["function (self)", "self"], self_rows)
    )


def conclude(
    goals: Sequence[Sequence[object]], raw: Path | None, during: str, *, keep: tuple[str, ...]
) -> int:
    """The goals' table, the load after the run and, when profiled, the profile."""
    print(table(["goal", "measured", "verdict"], goals))
    print(f"after the run: {load_note()}")
    if raw is not None:
        print()
        print(f"Profile of smsq serve during {during} (py-spy, raw stacks in {raw}):")
        print(summary(raw, keep=keep))
    return 0
