"""Stops that always end: any number of SIGINT/SIGTERM make one stop, bounded in time.

A Python signal handler runs in the main thread between two bytecodes, so it
may interrupt code holding a lock, or another run of itself. One that takes a
lock (as `threading.Event.set` does) can then wait forever for a lock its own
thread holds; a supervisor that forwards a signal to a whole process group
delivers it twice. And it runs late, or never, when the signal lands on
another thread (the kernel picks any) while the main thread waits on a lock.

So the signal is carried by the interpreter's wakeup fd, written at delivery
in whichever thread takes it, to a thread of smsq's own that starts the stop
and, past the grace period, ends the process by force. The Python handler
only writes the same pipe; it takes no lock.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import psutil

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Of the grace period, what is kept for ending everything by force.
FORCE_RESERVE = 1.0
# The exit status of a stop ended by force (EX_SOFTWARE).
FORCED = 70


class Stop:
    """Calls `begin` once, on the first signal (from a thread of its own, never
    inside a signal handler); if the process is still there at `deadline`
    (a second before the end of `grace`, kept for this), runs the clean-ups
    given to `on_force`, kills the processes it started and exits with FORCED."""

    def __init__(self, grace: float, begin: Callable[[], None]) -> None:
        self.grace = grace
        self._begin = begin
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._halts: list[Callable[[], None]] = []
        threading.Thread(target=self._watch, name="smsq-stop", daemon=True).start()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: async-signal-safe in effect, re-entrant, lock-free."""
        with contextlib.suppress(BlockingIOError):  # a stop is already on its way
            os.write(self._write, bytes([signum]))

    def install(self) -> None:
        """Take SIGINT and SIGTERM (from the main thread), until the process exits."""
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in SIGNALS:
            signal.signal(signum, self.handle)
        # On its way out the interpreter puts back the default action (death)
        # of every signal it has a handler for, then still runs finalizers and
        # flushes: ignored instead, a late signal cannot end it half-way out.
        atexit.register(_ignore_signals)

    def on_force(self, halt: Callable[[], None]) -> None:
        """Also run `halt` (quickly, without waiting long) when the stop is forced."""
        self._halts.append(halt)

    @property
    def deadline(self) -> float:
        """Seconds from the first signal that a graceful stop may take."""
        return max(self.grace - FORCE_RESERVE, self.grace / 2)

    def _watch(self) -> None:
        # The wakeup fd carries every signal with a handler (SIGHUP too): wait for ours.
        while os.read(self._read, 1)[0] not in SIGNALS:
            pass
        signalled = time.monotonic()
        log.info("stopping: up to %.1f s for requests and batches in flight", self.grace)
        try:
            self._begin()
        except Exception:  # the deadline below still holds
            log.exception("stopping: the stop could not begin")
        time.sleep(max(0.0, signalled + self.deadline - time.monotonic()))
        log.error(
            "forced exit: the stop did not end within %.1f s; ending what is left by force",
            self.deadline,
        )
        for halt in self._halts:
            try:
                halt()
            except Exception:
                log.exception("forced exit: a clean-up failed")
        kill_children()
        logging.shutdown()
        os._exit(FORCED)


def _ignore_signals() -> None:
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def kill_children(timeout: float = FORCE_RESERVE / 2) -> None:
    """Kill every process this one started, and wait until they are gone (for
    `timeout` at most): a kill takes effect after it is sent, and whoever
    starts the service again must not meet the old one's children."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=timeout)


def stop_on_signals(grace: float, begin: Callable[[], None]) -> Stop:
    """A Stop that takes SIGINT and SIGTERM from now until the process exits
    (a signal that comes once the stop is over must not kill it half-way out)."""
    stop = Stop(grace, begin)
    stop.install()
    return stop
