"""Run every benchmark, one after the other, each with its own PostgreSQL.

    uv run --group bench python -m bench [--quick] [--database-url URL]

Each one's output is also saved under bench/results/ (not versioned).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = ("ingest", "rounds", "lifecycle", "query", "replay", "peer")


def main() -> None:
    passed = sys.argv[1:]
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    failed = []
    for name in BENCHMARKS:
        out = results / f"{stamp}-{name}.txt"
        print(f"== bench.{name} (saved to {out})", flush=True)
        with out.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"bench.{name}", *passed],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    sys.stdout.write(line)
                    log.write(line)
            finally:
                # On Ctrl-C the child got the signal too: let it clean up first.
                code = proc.wait()
            if code:
                failed.append(name)
        print(flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
