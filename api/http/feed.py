"""GET /events/stream: the log, live, as server-sent events.

A raw ASGI route: the stream must notice a client that went away, send a
heartbeat when nothing happens, and give up on a client that stops reading
(a write that does not complete in time ends the response), none of which a
streamed response body lets a handler do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import parse_qsl

import msgspec
import psycopg
from litestar import Response, asgi
from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from api.http.problems import (
    PROBLEM_JSON,
    DeclaredQuery,
    FieldError,
    Problem,
    invalid,
    refused_query,
)
from api.http.schemas import Event
from api.http.services import Services
from commands.event_store import RecordedEvent
from domain.events import LOGGED_TYPES
from projections.feed import Lagged

_encode = msgspec.json.Encoder().encode
log = logging.getLogger(__name__)

# The most one send hands the server. The server holds a few sends a stream
# has made and the client has not taken yet: a client that stops reading
# leaves that much behind, and a batch of a thousand events sent whole would
# be some 650 kB each.
PIECE = 64 * 1024


def pieces(text: str) -> list[bytes]:
    """`text` encoded, in sends of at most PIECE bytes (a stream of bytes: where
    a piece ends, inside a message or a character, is nothing to the client)."""
    data = text.encode()
    return [data[start : start + PIECE] for start in range(0, len(data), PIECE)]


# What the stream takes, checked as a route's declared query parameters are.
_QUERY = DeclaredQuery(frozenset({"after", "type"}), {"type": frozenset(LOGGED_TYPES)})


class _Refused(Exception):
    def __init__(self, answer: Response[Problem]) -> None:
        super().__init__(answer.content)
        self.answer = answer


def _where_from(scope: Scope) -> tuple[int, str | None]:
    """`after` and `type` from the query; a Last-Event-ID (a reconnecting client's)
    wins over `after`."""
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    refused = refused_query(pairs, _QUERY)
    if refused is not None:
        raise _Refused(refused)
    given = dict(pairs)  # each name once, by now
    after = _position(given["after"], "after") if "after" in given else 0
    for header, raw in scope["headers"]:
        if header == b"last-event-id":
            after = _position(raw.decode("latin-1"), "Last-Event-ID")
    return after, given.get("type")


def _position(text: str, field: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise _Refused(
            invalid([FieldError(field, "must be a position: a whole number, 0 or more")])
        )
    return int(text)


async def _gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@asgi(
    "/events/stream",
    opt={"scope": "audit"},
    copy_scope=False,
    include_in_schema=False,
)
async def event_stream(scope: Scope, receive: Receive, send: Send) -> None:
    services: Services = scope["litestar_app"].state.services
    try:
        after, event_type = _where_from(scope)
    except _Refused as refused:
        # The same problem the other routes answer, sent by hand: this route is raw ASGI.
        await send(_start(422, [(b"content-type", PROBLEM_JSON.encode())]))
        await send(_body(_encode(refused.answer.content), more=False))
        return
    await send(
        _start(
            200,
            [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no"),
            ],
        )
    )

    async def write(text: str) -> None:
        for piece in pieces(text):
            await send_in_time(_body(piece, more=True))

    async def send_in_time(event: HTTPResponseBodyEvent) -> None:
        # A client that has not taken a message within this long is not reading.
        # (Not wait_for: a send the server will not cancel would hold it forever.)
        sending = asyncio.ensure_future(send(event))
        done, _ = await asyncio.wait({sending}, timeout=write_timeout)
        if not done:
            sending.cancel()
            raise TimeoutError
        sending.result()

    gone = asyncio.create_task(_gone(receive))
    feed = services.feed
    quiet = services.settings.feed_heartbeat
    write_timeout = services.settings.feed_write_timeout
    try:
        await write(f": following the log after position {after}\n\n")
        async with contextlib.aclosing(feed.follow(after, event_type, quiet=quiet)) as events:
            async for batch in events:
                if gone.done():
                    return
                if batch is None:
                    await write(": nothing new\n\n")
                    continue
                await write("".join(map(_message, batch)))
    except Lagged as lagged:
        # Told why, if it takes it in time; else let go like any client that
        # does not read (below), not held on the stream's last send.
        try:
            await write(f"event: lagged\ndata: {_encode({'detail': str(lagged)}).decode()}\n\n")
        except TimeoutError:
            log.info("live feed: a lagged client took nothing for %g s; dropped", write_timeout)
            return
        except Exception:  # it went away meanwhile
            return
    except TimeoutError:
        # Nothing more is written to it, and what it was owed is let go.
        log.info("live feed: a client took nothing for %g s; it is dropped", write_timeout)
        return
    except OSError:
        return  # a client that went away mid-write
    except psycopg.Error as error:
        # The feed lost its database: the client reconnects and resumes.
        log.warning("live feed: %s; the stream ends", error)
        return
    finally:
        gone.cancel()
    with contextlib.suppress(Exception):  # timed out, or the client went away
        await send_in_time(_body(b"", more=False))


def _message(event: RecordedEvent) -> str:
    data = _encode(Event.recorded(event)).decode()
    return f"id: {event.position}\nevent: {event.type}\ndata: {data}\n\n"


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> HTTPResponseStartEvent:
    return {"type": "http.response.start", "status": status, "headers": headers}


def _body(body: bytes, *, more: bool) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": body, "more_body": more}
