"""The verifier as bench.verify measures it, in a process of its own:

    python -m bench.verify_child URL

Prints one line of JSON: what it found, its wall and CPU seconds (its part
processes' included) and its RSS. It imports no more than `smsq verify`
needs, since each process that checks a part of the log imports this module
again (they are started by spawning).
"""

from __future__ import annotations

import json
import resource
import sys
import time

import psutil

from projections.verify import verify


def main(url: str) -> None:
    me = psutil.Process()
    rss: list[float] = []

    def tree_rss(n: int) -> None:
        """The verifier's processes together (it checks parts of the log side by side)."""
        if n:
            processes = [me, *me.children(recursive=True)]
            rss.append(sum(p.memory_info().rss for p in processes) / 2**20)

    started = time.perf_counter()
    cpu = time.process_time()
    report = verify(url, progress=tree_rss)
    elapsed = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu + children.ru_utime + children.ru_stime
    print(
        json.dumps(
            {
                "events": report.events,
                "seals": report.seals,
                "faults": len(report.faults),
                "seconds": elapsed,
                "cpu": cpu,
                # After the first tenth: once every process has started.
                "rss_first": rss[len(rss) // 10],
                "rss_last": rss[-1],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
