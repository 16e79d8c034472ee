"""What every `smsq` command needs: valid settings, a database, its schema current."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click

from api.runtime.settings import Settings, SettingsError, load_settings, unknown_variables


def cli_settings() -> Settings:
    for warning in unknown_variables(os.environ):
        click.echo(f"smsq: warning: {warning}", err=True)
    try:
        return load_settings()
    except SettingsError as error:
        raise click.ClickException(f"invalid setting: {error}") from None


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one started for the duration."""
    if settings.database_url:
        yield settings.database_url
        return
    from api.runtime.embedded import embedded_server

    click.echo(f"smsq: starting the embedded PostgreSQL in {settings.data_dir}", err=True)
    with embedded_server(settings.data_dir) as url:
        yield url


def migrate_or_fail(url: str, *, quiet: bool = False) -> None:
    from migrations import MigrationError, migrate

    try:
        applied = migrate(url, report=lambda line: click.echo(f"smsq: {line}", err=True))
    except MigrationError as error:
        raise click.ClickException(str(error)) from None
    if not applied and not quiet:
        click.echo("smsq: schema is up to date", err=True)
