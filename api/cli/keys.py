"""`smsq keys`: make, list and revoke API keys."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import psycopg

from api.cli.support import cli_settings, database, migrate_or_fail
from api.runtime.keys import SCOPES, ApiKey, create_key, list_keys, parse_scopes, revoke_key

T = TypeVar("T")


def _run(work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    settings = cli_settings()
    with database(settings) as url:
        migrate_or_fail(url, quiet=True)

        async def connected() -> T:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                return await work(conn)

        return asyncio.run(connected())


def _actor() -> str:
    """Who the access events name: the operating-system user who ran the command."""
    return f"operator:{getpass.getuser()}"


def _scopes(_: click.Context, __: click.Parameter, value: str) -> tuple[str, ...]:
    try:
        return parse_scopes(value)
    except ValueError as error:
        raise click.BadParameter(f"{error}; choose from {', '.join(SCOPES)}") from None


@click.group()
def keys() -> None:
    """API keys: each token is shown once, when made; only its hash is stored."""


@keys.command()
@click.option(
    "--scopes",
    required=True,
    callback=_scopes,
    help=f"Comma-separated, from: {', '.join(SCOPES)}.",
)
@click.option("--name", default="", help="What the key is for (shown by `smsq keys list`).")
def create(scopes: tuple[str, ...], name: str) -> None:
    """Make a key and print its token (the only time it is shown)."""
    issued = _run(lambda conn: create_key(conn, scopes, name, actor=_actor()))
    click.echo(
        f"smsq: key {issued.key.id} made with scopes {','.join(scopes)}; store the token now,"
        " it cannot be shown again",
        err=True,
    )
    click.echo(issued.token)


@keys.command(name="list")
def list_() -> None:
    """List keys (never their tokens)."""
    found = _run(list_keys)
    click.echo(f"{'ID':<12}  {'SCOPES':<26}  {'CREATED':<20}  {'REVOKED':<20}  NAME")
    for key in found:
        click.echo(_line(key))


def _line(key: ApiKey) -> str:
    def when(moment: Any) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"

    return (
        f"{key.id:<12}  {','.join(key.scopes):<26}  {when(key.created_at):<20}"
        f"  {when(key.revoked_at):<20}  {key.name}"
    )


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key: refused from then on (within SMSQ_AUTH_CACHE_SECONDS)."""
    key = _run(lambda conn: revoke_key(conn, key_id, actor=_actor()))
    if key is None:
        raise click.ClickException(f"no key {key_id}")
    click.echo(f"smsq: key {key.id} revoked", err=True)
