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
from domain.errors import InvalidField
from domain.key_limits import KeyRate
from domain.phone import PhoneNumber

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


def _rate(_: click.Context, __: click.Parameter, value: str | None) -> KeyRate | None:
    if value is None:
        return None
    try:
        return KeyRate.parse(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _senders(_: click.Context, __: click.Parameter, value: str) -> tuple[str, ...]:
    numbers = (n.strip() for n in value.split(",") if n.strip())
    try:
        return tuple(dict.fromkeys(PhoneNumber.parse(n, "senders").e164 for n in numbers))
    except InvalidField as error:
        raise click.BadParameter(error.message) from None


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
@click.option(
    "--rate",
    callback=_rate,
    help="The key's own request rate, N/s (a token bucket per serving process);"
    " unset: only the senders' limit applies.",
)
@click.option(
    "--senders",
    default="",
    callback=_senders,
    help="Comma-separated E.164 numbers: the only ones the key may send from; unset: any.",
)
def create(
    scopes: tuple[str, ...], name: str, rate: KeyRate | None, senders: tuple[str, ...]
) -> None:
    """Make a key and print its token (the only time it is shown)."""
    issued = _run(
        lambda conn: create_key(conn, scopes, name, rate=rate, senders=senders, actor=_actor())
    )
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
    click.echo(
        f"{'ID':<12}  {'SCOPES':<26}  {'RATE':<8}  {'CREATED':<20}  {'REVOKED':<20}  SENDERS  NAME"
    )
    for key in found:
        click.echo(_line(key))


def _line(key: ApiKey) -> str:
    def when(moment: Any) -> str:
        return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"

    rate = "-" if key.rate is None else f"{key.rate.per_second:g}/s"
    return (
        f"{key.id:<12}  {','.join(key.scopes):<26}  {rate:<8}  {when(key.created_at):<20}"
        f"  {when(key.revoked_at):<20}  {','.join(key.senders) or '-'}  {key.name}"
    )


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key: every serving process refuses it from then on."""
    key = _run(lambda conn: revoke_key(conn, key_id, actor=_actor()))
    if key is None:
        raise click.ClickException(f"no key {key_id}")
    click.echo(f"smsq: key {key.id} revoked", err=True)
