"""Closed-loop maximum throughput with wrk (Debian/Ubuntu: `apt-get install wrk`).

wrk is a small C program: one thread of it drives tens of thousands of
requests per second, so on a 2-core machine it leaves the CPU to the server
it measures, which no Python client can do.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.harness import require

SCRIPTS = Path(__file__).parent / "wrk"
HINT = "install it with `apt-get install wrk` (Debian, Ubuntu) or `brew install wrk` (macOS)"


@dataclass(frozen=True)
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def unexpected(self, expected: int) -> int:
        return self.errors + sum(n for s, n in self.statuses.items() if s != expected)

    def describe_unexpected(self, expected: int) -> str:
        """Zero, or how many unexpected answers and what: "12 (429: 10, socket errors: 2)"."""
        parts = [f"{s}: {n}" for s, n in sorted(self.statuses.items()) if s != expected]
        if self.errors:
            parts.append(f"socket errors: {self.errors}")
        total = self.unexpected(expected)
        return f"{total} ({', '.join(parts)})" if parts else "0"


def wrk(
    url: str,
    script: str,
    script_args: list[str],
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
) -> Run:
    binary = require("wrk", HINT)
    argv = [
        binary,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPTS / script),
        url,
        "--",
        *script_args,
        str(threads),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return Run(
        requests=data["requests"],
        seconds=data["seconds"],
        p50_ms=data["p50_ms"],
        p99_ms=data["p99_ms"],
        errors=data["errors"],
        statuses={int(k): v for k, v in data["statuses"].items()},
    )
