"""Apply `NNNN_name.sql` files in order, each once, each in its own transaction.

Two processes starting at once are serialised by a session advisory lock; the
second finds the work done. A file edited after it was applied is refused: the
database would no longer match what the repository says it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import msgspec
import psycopg

_DIR = Path(__file__).parent
# Any constant works; it only has to differ from the project's other advisory locks.
_LOCK_KEY = 0x736D7371_6D696772  # "smsqmigr"

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


class Migration(msgspec.Struct, frozen=True):
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(Exception):
    pass


def available() -> list[Migration]:
    return [
        Migration(p.stem, p.read_text()) for p in sorted(_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    ]


def _has_ledger(conn: psycopg.Connection) -> bool:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(exists and exists[0])


def applied_migrations(conn: psycopg.Connection) -> dict[str, str]:
    if not _has_ledger(conn):
        return {}
    return dict(conn.execute("SELECT name, checksum FROM schema_migrations").fetchall())


def pending(applied: dict[str, str], migrations: list[Migration]) -> list[Migration]:
    """The migrations still to run; raises if an applied one no longer matches its file."""
    known = {m.name for m in migrations}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(f"the database has migrations this code does not know: {unknown}")
    for m in migrations:
        if m.name in applied and applied[m.name] != m.checksum:
            raise MigrationError(f"migration {m.name} was changed after it was applied")
    return [m for m in migrations if m.name not in applied]


def migrate(
    conninfo: str,
    report: Callable[[str], None] = lambda _: None,
    migrations: list[Migration] | None = None,
) -> list[str]:
    """Bring the database up to date; returns the names it applied."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            if not _has_ledger(conn):
                # Only then: a role without CREATE (the service's own) can still
                # start against a schema that is already current.
                conn.execute(_LEDGER)
            todo = pending(
                applied_migrations(conn), available() if migrations is None else migrations
            )
            for m in todo:
                report(f"applying {m.name}")
                with conn.transaction():
                    conn.execute(m.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                        (m.name, m.checksum),
                    )
            return [m.name for m in todo]
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
