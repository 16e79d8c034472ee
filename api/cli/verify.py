"""`smsq verify`: check the log, its hash chain and its seals from the database alone."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from api.cli.support import cli_settings, database, reader_url, require_current_schema


def _expected(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> dict[int, str]:
    expected = {}
    for value in values:
        number, _sep, wanted = value.partition(":")
        if not number.isdigit() or len(wanted) != 64:
            raise click.BadParameter(
                f"{value!r} is not N:HASH (a seal number and its 64 hex digits)"
            )
        expected[int(number)] = wanted.lower()
    return expected


@click.command()
@click.option(
    "--from-seal",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Start at this seal (and the events after the one before it).",
)
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The seals' verifying key (PEM) as kept apart from the database;"
    " without it, the keys the database names are used.",
)
@click.option(
    "--expect-seal",
    "expect",
    multiple=True,
    callback=_expected,
    metavar="N:HASH",
    help="A seal the auditor kept: it must still be there, with this hash (repeatable).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="Processes that check parts of the log side by side (default: one per CPU).",
)
def verify(
    from_seal: int, public_key: Path | None, expect: dict[int, str], jobs: int | None
) -> None:
    """Recompute every event hash and seal, check the signatures; exit 0 only when clean."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from projections.verify import verify as check

    key = None
    if public_key is not None:
        try:
            loaded = load_pem_public_key(public_key.read_bytes())
        except OSError as error:
            hint = "--public-key"
            raise click.BadParameter(f"cannot read it: {error}", param_hint=hint) from None
        except (ValueError, UnsupportedAlgorithm):
            raise click.BadParameter("not a PEM public key", param_hint="--public-key") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise click.BadParameter("not an Ed25519 public key", param_hint="--public-key")
        key = loaded
    settings = cli_settings()
    with database(settings) as owner:
        url = reader_url(settings, owner)
        require_current_schema(url)
        total = _estimate(url)
        started = time.monotonic()
        console = Console(stderr=True)
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
            # Redrawn as the counts arrive, by no thread of its own: the
            # verifier forks its other processes only from a single thread.
            auto_refresh=False,
        ) as bar:
            task = bar.add_task("verify", total=total)

            def advance(n: int) -> None:
                bar.advance(task, n)
                bar.refresh()

            report = check(
                url,
                public_key=key,
                from_seal=from_seal,
                expect=expect,
                progress=advance,
                jobs=jobs,
            )
    elapsed = time.monotonic() - started
    for fault in report.faults:
        click.echo(fault)
    rate = report.events / elapsed if elapsed > 0 else 0.0
    last = f"; last seal {report.last_seal[0]} {report.last_seal[1]}" if report.last_seal else ""
    click.echo(
        f"smsq: {report.events:,} events and {report.seals:,} seals checked in {elapsed:.1f} s"
        f" ({rate:,.0f} events/s); {report.unsealed:,} events not sealed yet{last};"
        f" {len(report.faults)} faults",
        err=True,
    )
    sys.exit(1 if report.faults else 0)


def _estimate(url: str) -> int | None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'events'"
        ).fetchone()
    return int(row[0]) if row and row[0] > 0 else None
