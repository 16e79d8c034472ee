"""What a long-lived process does once it has started."""

from __future__ import annotations

import gc


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
