"""The HTTP server of `smsq serve`: granian, set for a hostile network and a bounded stop."""

from __future__ import annotations

from typing import Any

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.mp import MPServer

from api.runtime.logs import server_log_config
from api.runtime.settings import Settings
from api.runtime.stopping import Stop


class Server(MPServer):
    """Granian, whose stop is smsq's own (api.runtime.stopping): its handler of
    SIGINT/SIGTERM takes a lock, and a second signal can hang it for good."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        self.stop = Stop(settings.stop_grace, self.interrupt)
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

    def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
        self.stop.handle(*args)

    def interrupt(self) -> None:
        """Wake the serving loop to stop (from any thread but a signal handler)."""
        self.interrupt_signal = True
        self.main_loop_interrupt.set()
