"""GET /events/stream's writes: in bounded pieces, and never held by a client
that takes nothing, whichever way its stream ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import msgspec
from litestar.types import Message

from api.http.feed import PIECE, event_stream, pieces
from projections.feed import Lagged

WRITE_TIMEOUT = 0.05


def test_a_large_batch_goes_in_pieces_that_join_back_into_it() -> None:
    text = "a" + "é" * PIECE  # two bytes each, after one: pieces end inside characters
    sent = pieces(text)
    assert [len(p) for p in sent] == [PIECE, PIECE, 1]
    assert sent[0].endswith(b"\xc3")  # the first byte of an "é"
    assert b"".join(sent).decode() == text
    assert pieces(": nothing new\n\n") == [b": nothing new\n\n"]


class LaggedAtOnce:
    """A feed whose follower has already fallen further behind than its queue holds."""

    async def follow(
        self, after: int, event_type: str | None, *, quiet: float
    ) -> AsyncIterator[list[Any] | None]:
        raise Lagged("more than 1000 events behind")
        yield None  # (an async generator, as the real feed's is)


def lagged_scope(query: bytes) -> dict[str, Any]:
    """GET /events/stream?`query` on an app whose feed has its follower lagged at once."""
    settings = SimpleNamespace(feed_heartbeat=15.0, feed_write_timeout=WRITE_TIMEOUT)
    services = SimpleNamespace(feed=LaggedAtOnce(), settings=settings)
    app = SimpleNamespace(state=SimpleNamespace(services=services))
    return {"litestar_app": app, "query_string": query, "headers": []}


async def silent() -> Message:
    """A client that sends nothing and stays."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_a_lagged_client_that_takes_nothing_is_let_go_within_the_write_timeout() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) > 2:
            await asyncio.Event().wait()  # past the opening line, it reads nothing more

    # Held on the stream's last send, it would wait for the client for ever.
    await asyncio.wait_for(event_stream.fn(lagged_scope(b""), silent, send), 20 * WRITE_TIMEOUT)

    start, opening, lagged = sent  # and nothing offered after the note it did not take
    assert start["type"] == "http.response.start"
    assert opening["body"].startswith(b": following the log")
    assert lagged["body"].startswith(b"event: lagged\n")


async def opened(query: bytes) -> tuple[int, bytes]:
    """The status GET /events/stream?`query` starts with, and its first body."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) == 2:
            raise asyncio.CancelledError  # enough: the status and the first body

    with contextlib.suppress(asyncio.CancelledError):
        await event_stream.fn(lagged_scope(query), silent, send)
    return sent[0]["status"], sent[1]["body"]


async def test_the_stream_takes_each_parameter_once_and_every_logged_type() -> None:
    status, body = await opened(b"after=1&after=2")
    assert status == 422
    assert msgspec.json.decode(body)["errors"] == [
        {"field": "after", "message": "is given 2 times; give it once"}
    ]
    status, body = await opened(b"type=SmsDeleted")
    assert status == 422
    assert b"ApiKeyCreated" in body  # the types it takes, the access stream's among them
    assert (await opened(b"type=ApiKeyRevoked"))[0] == 200
    # Every bad parameter is named at once, as the other routes name them.
    status, body = await opened(b"typ=x&type=SmsDeleted")
    assert status == 422
    assert [e["field"] for e in msgspec.json.decode(body)["errors"]] == ["typ", "type"]
