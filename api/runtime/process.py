"""What a long-lived process does once it has started."""

from __future__ import annotations

import gc
import resource


def freeze_start_up() -> None:
    """Put what start-up made out of the garbage collector's sight.

    Modules, the app and the pool live as long as the process: frozen, a full
    collection no longer walks them while requests wait (the figures are in
    docs/performance.md). Garbage is collected first, not kept. Only for a
    process that serves one app for its whole life: a test process that makes
    many apps must not freeze each one's objects.
    """
    gc.collect()
    gc.freeze()


def allow_open_files(wanted: int) -> int:
    """Raise this process's limit of open files towards `wanted` (within the
    hard limit, which only an administrator raises); return the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft
