"""What every `smsq` command needs: valid settings, a database, its schema current."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click
from psycopg.conninfo import conninfo_to_dict, make_conninfo

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
    """The owner's URL of the configured database, or of the embedded one
    started for the duration: for migrations, replays and keys."""
    if settings.database_url:
        yield settings.owner_url or settings.database_url
        return
    from api.runtime.embedded import embedded_server

    click.echo(f"smsq: starting the embedded PostgreSQL in {settings.data_dir}", err=True)
    with embedded_server(settings.data_dir) as url:
        yield url


SERVICE_ROLE = "smsq_service"
AUDITOR_ROLE = "smsq_auditor"


def service_url(settings: Settings, owner_url: str) -> str:
    """Where everything that serves requests connects: as smsq_service.

    Embedded: the same server, logging in as the role (local connections are
    trusted). A configured database with SMSQ_OWNER_URL: SMSQ_DATABASE_URL as
    given, a login of smsq_service's. Without one: SMSQ_DATABASE_URL, which
    migrated as the owner, switched to the role for every session.
    """
    if settings.database_url is None:
        return make_conninfo(owner_url, user=SERVICE_ROLE)
    if settings.owner_url:
        return settings.database_url
    return as_role(settings.database_url, SERVICE_ROLE)


def reader_url(settings: Settings, url: str) -> str:
    """Where `smsq events` and `smsq verify` connect: on the embedded server
    as smsq_auditor; on a configured one, as SMSQ_DATABASE_URL says."""
    if settings.database_url is None:
        return make_conninfo(url, user=AUDITOR_ROLE)
    return settings.database_url


def as_role(url: str, role: str) -> str:
    params = conninfo_to_dict(url)
    options = str(params.get("options") or "")
    return make_conninfo(url, options=f"{options} -c role={role}".strip())


def require_current_schema(url: str) -> None:
    """Refuse to read a database whose schema is not the one this code knows;
    readers never migrate (they may not, and must not change what they check)."""
    import psycopg

    from migrations import MigrationError, available, pending
    from migrations.runner import applied_migrations

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            todo = pending(applied_migrations(conn), available())
    except MigrationError as error:
        raise click.ClickException(f"{error}: upgrade smsq to read this database") from None
    except psycopg.Error as error:
        raise click.ClickException(f"cannot read the database: {error}") from None
    if todo:
        names = ", ".join(m.name for m in todo)
        raise click.ClickException(
            f"the database schema is behind this smsq (not applied: {names});"
            " run `smsq migrate` as the schema's owner first"
        )


def migrate_or_fail(url: str, *, quiet: bool = False) -> None:
    from migrations import MigrationError, migrate

    try:
        applied = migrate(url, report=lambda line: click.echo(f"smsq: {line}", err=True))
    except MigrationError as error:
        raise click.ClickException(str(error)) from None
    if not applied and not quiet:
        click.echo("smsq: schema is up to date", err=True)
