"""The sealer: one more follower of the log, folding it into signed seals.

It runs as a projector does (the checkpoint row is its lease, the range is
gap-safe, the seal and the checkpoint commit together), so each event is
sealed exactly once, in reading order. A seal covers the events after the
previous seal's end up to the batch's end, chains to the previous seal's
hash and is signed with an Ed25519 key that never enters the database.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from projections.chain import SealBody
from projections.log import IN_RANGE, Checkpoint, range_params

NAME = "sealer"

# The covered events, the seal before this one and the time, in one round trip.
_RANGE = f"""
SELECT r.n, r.first, r.digest, coalesce(last.number, 0), coalesce(last.hash, ''),
       clock.now, (extract(epoch FROM clock.now) * 1000000)::bigint
FROM (SELECT clock_timestamp() AS now) AS clock, (
    SELECT count(*) AS n, min(position) FILTER (WHERE first) AS first,
           encode(sha256(convert_to(string_agg(hash, '' ORDER BY tx_id, position), 'UTF8')),
                  'hex') AS digest
    FROM (
        SELECT position, tx_id, hash,
               row_number() OVER (ORDER BY tx_id, position) = 1 AS first
        FROM events WHERE {IN_RANGE}
    ) AS covered
) AS r
LEFT JOIN LATERAL (
    SELECT number, hash FROM seals ORDER BY number DESC LIMIT 1
) AS last ON true
"""

_INSERT = """
INSERT INTO seals (number, after_tx_id, after_position, to_tx_id, to_position, from_position,
                   events, events_digest, previous, hash, key_id, signature, sealed_at)
VALUES (%(number)s, %(after_tx)s::text::xid8, %(after_position)s, %(to_tx)s::text::xid8,
        %(to_position)s, %(from_position)s, %(events)s, %(digest)s, %(previous)s, %(hash)s,
        %(key_id)s, %(signature)s, %(sealed_at)s)
"""

_PUBLISH = """
INSERT INTO seal_keys (key_id, public_key)
SELECT %(key_id)s, %(public_key)s
WHERE NOT EXISTS (SELECT 1 FROM seal_keys WHERE key_id = %(key_id)s)
ON CONFLICT DO NOTHING
"""


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()


class Sealer:
    name = NAME

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        public = key.public_key()
        self.key_id = key_id(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
        self.public_pem = public.public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        ).decode()
        self._published = False

    async def apply(
        self, conn: psycopg.AsyncConnection[Any], lo: Checkpoint, hi: Checkpoint
    ) -> None:
        if not self._published:
            # Before the first seal it signs: the database then names the key
            # of every seal it holds.
            await conn.execute(_PUBLISH, {"key_id": self.key_id, "public_key": self.public_pem})
            self._published = True
        cur = await conn.execute(_RANGE, range_params(lo, hi))
        row = await cur.fetchone()
        assert row is not None
        events, first, digest, last_number, last_hash, now, now_us = row
        if not events:
            return
        body = SealBody(
            number=last_number + 1,
            previous=last_hash,
            after_tx_id=lo.tx_id,
            after_position=lo.position,
            to_tx_id=hi.tx_id,
            to_position=hi.position,
            from_position=first,
            events=events,
            events_digest=digest,
            key_id=self.key_id,
            sealed_at_us=now_us,
        )
        seal_hash = body.hash()
        signature = self._key.sign(bytes.fromhex(seal_hash)).hex()
        await conn.execute(
            _INSERT,
            {
                "number": body.number,
                "after_tx": lo.tx_id,
                "after_position": lo.position,
                "to_tx": hi.tx_id,
                "to_position": hi.position,
                "from_position": first,
                "events": events,
                "digest": digest,
                "previous": last_hash,
                "hash": seal_hash,
                "key_id": self.key_id,
                "signature": signature,
                "sealed_at": now,
            },
        )
