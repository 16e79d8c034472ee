"""Answers given before a body was read still reach the client.

An upload refused before its body is read (busy, no room, unknown message, no
key) is answered at once; but the HTTP server closes a connection whose
request body it has not read, and the kernel then resets it, taking the
answer with it: a client still sending its 5 MiB sees a broken connection,
not the 503 and its `Retry-After`. So after the answer, the rest of the body
is read and dropped, a piece at a time (nothing is kept), for a body no
larger than an upload may be and for at most `SMSQ_BODY_TIMEOUT`; the
client then reads its answer and may use the connection again. A longer
body is left unread: the connection is closed as before.
"""

from __future__ import annotations

import asyncio

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send


class DiscardUnreadBody(ASGIMiddleware):
    def __init__(self, largest: int, timeout: float) -> None:
        self.largest = largest
        self.timeout = timeout

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        ended = False

        async def tracked() -> ReceiveMessage:
            nonlocal ended
            message = await receive()
            ended = ended or message["type"] != "http.request" or not message.get("more_body")
            return message

        await next_app(scope, tracked, send)
        if not ended and self._has_body(scope):
            try:
                async with asyncio.timeout(self.timeout):
                    await self._discard(receive)
            except TimeoutError:
                return

    async def _discard(self, receive: Receive) -> None:
        read = 0
        while read <= self.largest:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    def _has_body(self, scope: Scope) -> bool:
        """A body is coming that is worth reading to its end."""
        headers = dict(scope["headers"])
        if b"content-length" in headers:
            try:
                return 0 < int(headers[b"content-length"]) <= self.largest
            except ValueError:
                return False
        return b"transfer-encoding" in headers
