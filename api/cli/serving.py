"""The HTTP server of `smsq serve`: granian, set for a hostile network and a bounded stop."""

from __future__ import annotations

import logging
import signal
from typing import Any, cast

import granian._signals
from granian._granian import WorkerSignal
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.mp import MPServer, WorkerProcess

from api.runtime.logs import server_log_config
from api.runtime.settings import Settings
from api.runtime.stopping import SIGNALS, Stop

log = logging.getLogger(__name__)


class Server(MPServer):
    """Granian, whose stop is smsq's own (api.runtime.stopping): its handler of
    SIGINT/SIGTERM takes a lock, and a second signal can hang it for good."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        self.stop = Stop(settings.stop_grace, self.interrupt)
        # The workers are forked from this process, and so take this function.
        granian._signals.set_loop_signals = _set_loop_signals_once
        # HTTP/1.1 alone: hyper then reads the first request's headers under
        # header_read_timeout from the accept. Serving HTTP/2 as well, it waits,
        # with no deadline, for the bytes that tell the two apart.
        http = HTTPModes.auto if settings.http2 else HTTPModes.http1
        super().__init__(
            "api.http.app:app_from_env",
            factory=True,
            interface=Interfaces.ASGI,
            address=settings.host,
            port=settings.port,
            workers=settings.workers,
            http=http,
            http1_settings=HTTP1Settings(header_read_timeout=round(settings.header_timeout * 1000)),
            # Each connection holds one of these from its accept to its close;
            # past them, new connections wait in the listen backlog.
            backpressure=settings.max_connections,
            # Workers still busy past half the stop's time are killed, leaving
            # the other half for the database to stop.
            workers_kill_timeout=max(1, int(self.stop.deadline / 2)),
            log_level=LogLevels(settings.log_level.lower()),
            log_dictconfig=server_log_config(settings.log_format),
            **options,
        )

    def _spawn_worker(self, *args: Any, **kwargs: Any) -> WorkerProcess:
        worker = super()._spawn_worker(*args, **kwargs)
        worker.__class__ = _Worker  # not started yet: its watcher is ours
        return worker

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        self.stop.handle(*args)

    def interrupt(self) -> None:
        """Wake the serving loop to stop (from any thread but a signal handler)."""
        # A signal to the process group reaches the workers too, and one may
        # exit before this process asks it to: that is the stop, not a crash.
        for worker in list(self.wrks):
            worker.interrupt_by_parent = True
        self.interrupt_signal = True
        self.main_loop_interrupt.set()


class _Worker(WorkerProcess):
    """A worker whose clean exit, unasked, is a stop rather than a crash.

    A worker ends cleanly only on SIGINT or SIGTERM. One sent to the process
    group reaches this process and the worker at once, and an idle worker is
    gone some 10 ms later: when this process is slower to begin its stop (it
    lost the processor, say), granian counted the exit as a crash and the
    stop ended with status 1. So a worker that ended cleanly before being
    asked starts the stop itself, as a signal would; a worker that died
    (killed, or an error) is still a crash."""

    def _watcher(self) -> None:
        self.inner.join()
        if not self.interrupt_by_parent and self.inner.exitcode == 0:
            log.info("worker-%d stopped on a signal: stopping", self.idx + 1)
            self.interrupt_by_parent = True
            cast(Server, self.parent).stop.handle(signal.SIGTERM, None)
        super()._watcher()  # type: ignore[no-untyped-call]


def _set_loop_signals_once(loop: Any) -> Any:
    """granian's own (granian._signals.set_loop_signals), but telling the worker
    to stop only once: its WorkerSignal.set blocks on a full channel of one,
    holding the interpreter, so a second SIGTERM or SIGINT (a signal to the
    group, then the parent's) froze the worker mid-request until it was killed."""
    stopping = WorkerSignal()
    told = False

    def tell(signum: int, frame: Any) -> None:
        nonlocal told  # run by the event loop, one callback at a time
        if not told:
            told = True
            stopping.set()

    for signum in SIGNALS:
        loop.add_signal_handler(signum, tell, signum, None)
    return stopping
