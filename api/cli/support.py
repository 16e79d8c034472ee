"""What every `smsq` command needs: valid settings, a database, its schema current."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import msgspec
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api.runtime.logs import configure_logging
from api.runtime.settings import (
    Settings,
    SettingsError,
    flag_name,
    load_settings,
    unknown_variables,
    variable_name,
)

# Where a command's setting flags keep their values, in the click context.
FLAGS = "smsq.settings"
# The settings of every command that reaches the database.
DATABASE = ("database_url", "owner_url", "data_dir", "log_level", "log_format")


def cli_settings() -> Settings:
    """The settings: the `SMSQ_*` variables, and over them the command's flags.

    The flags given are also set as their variables, for the processes the
    command starts (the HTTP workers of `smsq serve` read their environment).
    """
    for warning in unknown_variables(os.environ):
        click.echo(f"smsq: warning: {warning}", err=True)
    flags: dict[str, str] = click.get_current_context().meta.get(FLAGS, {})
    try:
        settings = load_settings(flags=flags)
    except SettingsError as error:
        raise click.ClickException(f"invalid setting: {error}") from None
    os.environ.update({variable_name(name): value for name, value in flags.items()})
    if {"log_level", "log_format"} & flags.keys():
        configure_logging(settings.log_level, settings.log_format)
    return settings


def setting_flags(command: click.Command, names: Iterable[str] | None = None) -> None:
    """Give `command` a flag for each setting named (all of them when None),
    named after its variable and described as it is; `cli_settings` reads them."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    chosen = None if names is None else set(names)
    for field in info.fields:
        if chosen is None or field.name in chosen:
            command.params.append(_flag(field))


def _flag(field: msgspec.inspect.Field) -> click.Option:
    schema = getattr(field.type, "extra_json_schema", None) or {}
    shown = f"{schema.get('description', '')} [{variable_name(field.name)}]"
    flag = flag_name(field.name)
    if _is_bool(field.type):
        return click.Option(
            [f"{flag}/--no-{flag[2:]}"],
            default=None,
            help=shown,
            expose_value=False,
            callback=_keep(field.name, lambda value: "true" if value else "false"),
        )
    return click.Option(
        [flag],
        metavar=_metavar(field.type),
        help=shown,
        expose_value=False,
        callback=_keep(field.name, str),
    )


def _is_bool(kind: msgspec.inspect.Type) -> bool:
    return isinstance(getattr(kind, "type", kind), msgspec.inspect.BoolType)


def _metavar(kind: msgspec.inspect.Type) -> str:
    kind = getattr(kind, "type", kind)  # a Metadata wraps the type it constrains
    if isinstance(kind, msgspec.inspect.UnionType):  # X | None
        kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
        kind = getattr(kind, "type", kind)
    if isinstance(kind, msgspec.inspect.LiteralType):
        return "[" + "|".join(str(v) for v in kind.values) + "]"
    if isinstance(kind, msgspec.inspect.CustomType) and kind.cls is Path:
        return "PATH"
    names = {msgspec.inspect.IntType: "INTEGER", msgspec.inspect.FloatType: "NUMBER"}
    return next((n for t, n in names.items() if isinstance(kind, t)), "TEXT")


def _keep(
    name: str, text: Callable[[Any], str]
) -> Callable[[click.Context, click.Parameter, Any], None]:
    def keep(ctx: click.Context, _: click.Parameter, value: Any) -> None:
        if value is not None:
            ctx.meta.setdefault(FLAGS, {})[name] = text(value)

    return keep


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
        try:
            yield url
        finally:
            click.echo("smsq: stopping the embedded PostgreSQL", err=True)


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
