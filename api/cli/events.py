"""`smsq events`: the log as JSON lines, for auditors; with --follow, as it grows."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any
from uuid import UUID

import click
import msgspec
import psycopg

from api.cli.support import cli_settings, database, reader_url, require_current_schema
from commands.notify import CHANNEL
from domain.events import LOGGED_TYPES, stream_of
from projections.log import LogEntry, read_after

PAGE = 1000
POLL = 0.5


def _stream(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return stream_of(UUID(value))
    except ValueError:
        return value


@click.command()
@click.option("--stream", callback=_stream, help="Only this stream (`sms-<id>`, or a message id).")
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Start after the event at this position (as GET /events does).",
)
@click.option(
    "--type", "event_type", type=click.Choice(sorted(LOGGED_TYPES)), help="Only this type."
)
@click.option("--follow", is_flag=True, help="Keep printing events as they are committed.")
def events(stream: str | None, after: int, event_type: str | None, follow: bool) -> None:
    """Print the event log as JSON lines, in the order GET /events gives it."""
    settings = cli_settings()
    with database(settings) as owner:
        url = reader_url(settings, owner)
        require_current_schema(url)
        try:
            asyncio.run(_print(url, after, event_type, stream, follow))
        except BrokenPipeError:
            # The reader went away (`smsq events | head`): a normal end. Point
            # stdout at nothing so that the interpreter's final flush stays quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


async def _print(
    url: str, after: int, event_type: str | None, stream: str | None, follow: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    encode = msgspec.json.Encoder().encode
    out = sys.stdout.buffer
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if follow:
            await conn.execute(f"LISTEN {CHANNEL}")
        while not stop.is_set():
            page = await read_after(conn, after, PAGE, event_type=event_type, stream_id=stream)
            for recorded in page:
                out.write(encode(LogEntry.recorded(recorded)) + b"\n")
            out.flush()
            if page:
                after = page[-1].position
            if len(page) == PAGE:
                continue
            if not follow:
                return
            await _wait(conn)


async def _wait(conn: psycopg.AsyncConnection[Any]) -> None:
    """Until the log grows (NOTIFY) or the poll interval passes; a lost
    notification costs at most that interval."""
    async for _ in conn.notifies(timeout=POLL, stop_after=1):
        pass
