"""API keys: made, listed and revoked here; only a hash of each token is stored.

A token reads `smsq_<id>_<secret>`: the id finds the key, then the token's
SHA-256 is compared with the stored one in constant time. The secret is 256
random bits, so nobody can guess it or reverse its hash; a slow password hash
would add tens of milliseconds per request and no safety.

Making or revoking a key notifies `CHANNEL` in the same transaction: each
serving process holds the live keys in memory and reloads them when told.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
import psycopg
from uuid_utils.compat import uuid7

from commands.handler import Intent, handle
from domain.access import (
    STREAM,
    AccessCommand,
    AccessEvent,
    ApiKeyCreated,
    ApiKeyRevoked,
    CreateApiKey,
    RevokeApiKey,
    access_decider,
)
from domain.decider import Rejection
from domain.events import EventMetadata
from domain.key_limits import KeyRate

SCOPES = ("write", "read", "audit", "metrics")
CHANNEL = "smsq_keys"

_TOKEN = re.compile(r"^smsq_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    scopes: tuple[str, ...]
    rate: KeyRate | None
    senders: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None


class Issued(msgspec.Struct, frozen=True):
    key: ApiKey
    token: str


class StoredKey(msgspec.Struct, frozen=True):
    """What verifying a token needs: the hash to compare, the scopes to grant and
    the key's own limits."""

    id: str
    token_sha256: bytes
    scopes: frozenset[str]
    rate: KeyRate | None = None
    senders: frozenset[str] = frozenset()

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_sha256, digest(token))


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def key_id_of(token: str) -> str | None:
    """The key id a well-formed token names; None for anything else."""
    found = _TOKEN.match(token)
    return found.group(1) if found else None


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(
            f"unknown scope {', '.join(unknown)}" if unknown else "at least one scope is needed"
        )
    return scopes


_COLUMNS = "id, name, scopes, rate_per_second, senders, created_at, revoked_at"


def _rate(per_second: float | None) -> KeyRate | None:
    return None if per_second is None else KeyRate(per_second)


def _key(row: tuple[Any, ...]) -> ApiKey:
    key_id, name, scopes, rate, senders, created_at, revoked_at = row
    return ApiKey(
        id=key_id,
        name=name,
        scopes=tuple(scopes),
        rate=_rate(rate),
        senders=tuple(senders),
        created_at=created_at,
        revoked_at=revoked_at,
    )


def _intent(command: AccessCommand, actor: str) -> Intent[AccessCommand]:
    # A key change is a request of its own: it starts its own correlation.
    cause = uuid7()
    return Intent(
        STREAM, command, EventMetadata(correlation_id=cause, causation_id=cause, actor=actor)
    )


async def _notify(conn: psycopg.AsyncConnection[Any], key_id: str) -> None:
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, key_id))


async def create_key(
    conn: psycopg.AsyncConnection[Any],
    scopes: Iterable[str],
    name: str = "",
    *,
    rate: KeyRate | None = None,
    senders: Iterable[str] = (),
    actor: str = "operator",
) -> Issued:
    """Make a key: its ApiKeyCreated event (no secret in it) and its row, in one
    transaction. `conn` must be in autocommit mode."""
    key_id = secrets.token_hex(6)
    token = f"smsq_{key_id}_{secrets.token_urlsafe(32)}"
    command = CreateApiKey(
        key_id=key_id,
        name=name,
        scopes=tuple(scopes),
        rate_per_second=None if rate is None else rate.per_second,
        senders=tuple(senders),
        actor=actor,
    )

    async def write_row(conn: psycopg.AsyncConnection[Any], events: Sequence[AccessEvent]) -> None:
        [created] = events
        assert isinstance(created, ApiKeyCreated)
        await conn.execute(
            "INSERT INTO api_keys"
            " (id, name, scopes, rate_per_second, senders, token_sha256, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                key_id,
                name,
                list(created.scopes),
                created.rate_per_second,
                list(created.senders),
                digest(token),
                created.created_at,
            ),
        )
        await _notify(conn, key_id)

    handled = await handle(conn, access_decider, _intent(command, actor), before_append=write_row)
    if isinstance(handled.decision, Rejection):
        raise RuntimeError(f"key {key_id} not made: {type(handled.decision).__name__}")
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s", (key_id,))
    row = await cur.fetchone()
    assert row is not None
    return Issued(_key(row), token)


async def list_keys(conn: psycopg.AsyncConnection[Any]) -> list[ApiKey]:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
    return [_key(row) for row in await cur.fetchall()]


async def revoke_key(
    conn: psycopg.AsyncConnection[Any], key_id: str, *, actor: str = "operator"
) -> ApiKey | None:
    """Revoke the key: its ApiKeyRevoked event and its row, in one transaction (a
    second revoke changes nothing); None when there is no such key."""

    async def write_row(conn: psycopg.AsyncConnection[Any], events: Sequence[AccessEvent]) -> None:
        [revoked] = events
        assert isinstance(revoked, ApiKeyRevoked)
        await conn.execute(
            "UPDATE api_keys SET revoked_at = %s WHERE id = %s", (revoked.revoked_at, key_id)
        )
        await _notify(conn, key_id)

    command = RevokeApiKey(key_id=key_id, actor=actor)
    handled = await handle(conn, access_decider, _intent(command, actor), before_append=write_row)
    if isinstance(handled.decision, Rejection):
        return None
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s", (key_id,))
    row = await cur.fetchone()
    return None if row is None else _key(row)


class LiveKeys(msgspec.Struct, frozen=True):
    """Every key that may be used now, by id, and whether any key was ever made."""

    by_id: dict[str, StoredKey]
    any_made: bool


async def live_keys(conn: psycopg.AsyncConnection[Any]) -> LiveKeys:
    cur = await conn.execute(
        "SELECT id, token_sha256, scopes, rate_per_second, senders, revoked_at IS NULL"
        " FROM api_keys"
    )
    rows = await cur.fetchall()
    by_id = {
        key_id: StoredKey(key_id, bytes(sha), frozenset(scopes), _rate(rate), frozenset(senders))
        for key_id, sha, scopes, rate, senders, live in rows
        if live
    }
    return LiveKeys(by_id, any_made=bool(rows))


async def any_key_made(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether a key was ever made (a revoked one counts: revoking never reopens)."""
    cur = await conn.execute("SELECT EXISTS (SELECT 1 FROM api_keys)")
    row = await cur.fetchone()
    return bool(row and row[0])
