"""The `smsq` command line."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import click
from rich.console import Console

from api.cli.events import events
from api.cli.keys import keys
from api.cli.support import (
    DATABASE,
    cli_settings,
    database,
    migrate_or_fail,
    service_url,
    setting_flags,
)
from api.cli.verify import verify
from api.runtime.logs import configure_logging
from api.runtime.settings import Settings, SettingsError, describe, is_loopback, load_settings
from api.runtime.stopping import stop_on_signals

# Open files a server process needs besides its connections: pools, logs, listeners.
SPARE_FILES = 256


@click.group(
    epilog="\b\nSettings (environment variables; each also a flag, --host for SMSQ_HOST,"
    " of the commands that use it, which wins over the variable):\n" + describe()
)
def main() -> None:
    """smsq: event-sourced SMS intake over HTTP, backed by PostgreSQL."""
    try:
        settings = load_settings()
    except SettingsError:
        configure_logging("INFO", "text")  # the command itself reports the bad setting
    else:
        configure_logging(settings.log_level, settings.log_format)


main.add_command(keys)
main.add_command(events)
main.add_command(verify)


@main.command()
def migrate() -> None:
    """Apply the database migrations that have not run yet."""
    settings = cli_settings()
    with database(settings) as url:
        migrate_or_fail(url)


@main.command()
def serve() -> None:
    """Migrate, then serve the HTTP API (and, unless disabled, the projectors)."""
    from api.cli.serving import Server
    from api.runtime.embedded import halt
    from api.runtime.process import allow_open_files

    settings = cli_settings()
    # Every connection is an open file; more than the usual 1,024 may be open.
    allow_open_files(settings.max_connections + SPARE_FILES)
    server = Server(settings)
    # From here on a signal starts the stop, also before the server runs
    # (which then installs the same handler).
    server.stop.install()
    if settings.database_url is None:
        server.stop.on_force(partial(halt, settings.data_dir))
    with database(settings) as url, tempfile.TemporaryDirectory(prefix="smsq-metrics-") as counts:
        migrate_or_fail(url)
        if not is_loopback(settings.host) and not asyncio.run(_keys_exist(url)):
            raise click.ClickException(
                f"refusing to listen on {settings.host}, a non-loopback address, while no API"
                " key exists: anyone who can reach it could use the service. Make one first"
                " (smsq keys create --scopes read,write), or listen on 127.0.0.1."
            )
        # The workers are separate processes: they read their settings from the
        # environment, including the URL of an embedded server started here
        # (as smsq_service: nothing that serves requests connects as the owner),
        # and keep their HTTP counters in files that any of them can add up.
        os.environ["SMSQ_DATABASE_URL"] = service_url(settings, url)
        # Made here, before the workers start, so that they all read one key;
        # a server that runs no sealer neither makes nor reads one.
        if settings.run_projectors and settings.run_sealer:
            _seal_key(settings)
        # (This process must not import prometheus_client before setting it:
        # the library picks its mode once, at import, and workers inherit it.)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = counts
        if not server.interrupt_signal:
            click.echo(f"smsq: serving on http://{settings.host}:{settings.port}", err=True)
            server.serve()
    click.echo("smsq: stopped", err=True)


async def _keys_exist(url: str) -> bool:
    import psycopg

    from api.runtime.keys import any_key_made

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await any_key_made(conn)


@main.command()
def worker() -> None:
    """Run the projectors and the processing stage without the API (for scale-out)."""
    from api.runtime.embedded import halt

    settings = cli_settings()
    stopping = threading.Event()
    wake: list[Callable[[], object]] = []

    def begin() -> None:
        stopping.set()
        for call in wake:
            call()

    stop = stop_on_signals(settings.stop_grace, begin)
    if settings.database_url is None:
        stop.on_force(partial(halt, settings.data_dir))
    with database(settings) as url:
        migrate_or_fail(url)
        if not stopping.is_set():
            click.echo("smsq: worker running; Ctrl-C to stop", err=True)
            asyncio.run(_work(service_url(settings, url), settings, stopping, wake))
    click.echo("smsq: worker stopped", err=True)


def _seal_key(settings: Settings) -> Any:
    from api.runtime.sealing import SealKeyError, load_or_create_key, seal_key_path

    try:
        return load_or_create_key(seal_key_path(settings))
    except (SealKeyError, OSError, ValueError) as error:
        raise click.ClickException(f"the seal key: {error}") from None


async def _work(
    url: str, settings: Settings, stopping: threading.Event, wake: list[Callable[[], object]]
) -> None:
    from api.runtime.background import background
    from api.runtime.pooling import open_pool
    from projections.listener import Listener, listening
    from projections.sealer import Sealer

    stop = asyncio.Event()
    wake.append(partial(asyncio.get_running_loop().call_soon_threadsafe, stop.set))
    if stopping.is_set():  # a signal came while this loop was starting
        return
    listener = Listener(url)
    sealer = Sealer(_seal_key(settings)) if settings.run_sealer else None
    async with (
        open_pool(url, settings, name="worker") as pool,
        background(url, pool, listener, sealer),
        listening(listener),
    ):
        await stop.wait()


@main.command()
@click.argument("names", nargs=-1)
@click.option("--chunk", default=50_000, show_default=True, help="Events folded per transaction.")
def replay(names: tuple[str, ...], chunk: int) -> None:
    """Rebuild read models from the event log (all of them when no NAME is given).

    One pass over the log folds every model named into shadow tables, which
    are swapped in together at the end in one transaction; the API keeps
    answering from the old tables meanwhile.
    """
    from projections.catalog import read_models

    models = read_models()
    unknown = sorted(set(names) - set(models))
    if unknown:
        raise click.BadParameter(
            f"unknown read model {', '.join(unknown)}; choose from {', '.join(models)}",
            param_hint="NAME",
        )
    settings = cli_settings()
    with database(settings) as url:
        migrate_or_fail(url)
        asyncio.run(_replay(url, [models[n] for n in dict.fromkeys(names or models)], chunk))


async def _replay(url: str, models: list[Any], chunk: int) -> None:
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

    names = ", ".join(model.name for model in models)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        total = await events_to_replay(conn)
        started = time.monotonic()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task(names, total=total)
            folded = await replay(conn, *models, chunk=chunk, progress=partial(bar.advance, task))
        elapsed = time.monotonic() - started
        rate = folded / elapsed if elapsed > 0 else 0.0
        click.echo(
            f"smsq: {names} rebuilt from {folded:,} events in one pass"
            f" in {elapsed:.1f} s ({rate:,.0f} events/s)",
            err=True,
        )


# Each command takes a flag for each setting it uses.
for command in (migrate, replay, events, verify, *keys.commands.values()):
    setting_flags(command, DATABASE)
setting_flags(serve)
setting_flags(  # the worker's: those its pool, its sealer and its stop read
    worker,
    (
        *DATABASE,
        "seal_key_file",
        "run_sealer",
        "pool_max",
        "db_timeout",
        "statement_timeout",
        "stop_grace",
    ),
)
