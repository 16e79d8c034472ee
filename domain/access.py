"""Who may use the service: API keys made and revoked, as events of the stream `access`.

The key's row (its token's hash, for checking requests) is written in the
same transaction as its event; the event never carries the secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import ClassVar

import msgspec

from domain.decider import Decider, Rejection

STREAM = "access"


class ApiKeyCreated(msgspec.Struct, frozen=True, kw_only=True):
    """Version 2 added the key's own limits: `rate_per_second` (None: no rate of
    its own) and `senders` (empty: any number)."""

    TYPE: ClassVar[str] = "ApiKeyCreated"
    SCHEMA_VERSION: ClassVar[int] = 2

    key_id: str
    name: str
    scopes: tuple[str, ...]
    rate_per_second: float | None
    senders: tuple[str, ...]
    actor: str
    created_at: datetime


class ApiKeyRevoked(msgspec.Struct, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "ApiKeyRevoked"
    SCHEMA_VERSION: ClassVar[int] = 1

    key_id: str
    actor: str
    revoked_at: datetime


AccessEvent = ApiKeyCreated | ApiKeyRevoked


class CreateApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    name: str
    scopes: tuple[str, ...]
    actor: str
    rate_per_second: float | None = None
    senders: tuple[str, ...] = ()


class RevokeApiKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    actor: str


AccessCommand = CreateApiKey | RevokeApiKey


class Key(msgspec.Struct, frozen=True, kw_only=True):
    scopes: tuple[str, ...]
    rate_per_second: float | None = None
    senders: tuple[str, ...] = ()
    revoked: bool = False


Keys = Mapping[str, Key]


class KeyExists(Rejection, frozen=True):
    """A key with this id was made before (ids are random: make another)."""


class NoSuchKey(Rejection, frozen=True):
    """No key with this id was ever made."""


def decide(command: AccessCommand, keys: Keys, now: datetime) -> Sequence[AccessEvent] | Rejection:
    if isinstance(command, CreateApiKey):
        if command.key_id in keys:
            return KeyExists()
        return [
            ApiKeyCreated(
                key_id=command.key_id,
                name=command.name,
                scopes=command.scopes,
                rate_per_second=command.rate_per_second,
                senders=command.senders,
                actor=command.actor,
                created_at=now,
            )
        ]
    key = keys.get(command.key_id)
    if key is None:
        return NoSuchKey()
    if key.revoked:
        return []  # revoking twice changes nothing
    return [ApiKeyRevoked(key_id=command.key_id, actor=command.actor, revoked_at=now)]


def evolve(keys: Keys, event: AccessEvent) -> Keys:
    changed = dict(keys)
    if isinstance(event, ApiKeyCreated):
        changed[event.key_id] = Key(
            scopes=event.scopes, rate_per_second=event.rate_per_second, senders=event.senders
        )
    else:
        changed[event.key_id] = msgspec.structs.replace(keys[event.key_id], revoked=True)
    return MappingProxyType(changed)


access_decider: Decider[AccessCommand, Keys, AccessEvent] = Decider(
    initial=MappingProxyType({}), decide=decide, evolve=evolve
)
