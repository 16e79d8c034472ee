"""Checking one part of the log: its events' hashes and the seals that cover them.

A part is a run of consecutive seals and the events they cover (the last
part runs on to the log's end, unsealed events included). Parts are checked
on their own, side by side (projections/verify.py), each on two connections
that share the verifier's snapshot: the events stream through COPY in
reading order, the seals through a cursor on the second, so memory stays
flat however long the log. Each fault is a line naming a position or a seal.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from psycopg.abc import Buffer

from domain import upcasting
from domain.events import LOGGED_TYPES
from projections.chain import EventsDigest, SealBody

# The stored values as text, exactly as the hash covers them, in reading
# order. An index scan streams from the first row, so the server reads while
# the verifier hashes; a sort or a hash join (the predecessor's hash by a
# self-join) would hold every row back until the whole log had been read.
EVENTS = """
COPY (
    SELECT position, tx_id, stream_id, version, event_id, type, schema_version, data, metadata,
           (extract(epoch FROM recorded_at) * 1000000)::bigint, hash
    FROM events
    WHERE (tx_id, position) > (%(tx)s::text::xid8, %(position)s)
      AND (tx_id, position) <= (%(to_tx)s::text::xid8, %(to_position)s)
    ORDER BY tx_id, position
) TO STDOUT
"""

# The stored hashes of predecessors that were not read recently, by index.
_PREDECESSORS = """
SELECT w.i, p.hash
FROM unnest(%(streams)s::text[], %(versions)s::int[]) WITH ORDINALITY AS w (stream_id, version, i)
JOIN events AS p ON p.stream_id = w.stream_id AND p.version = w.version
"""

_SEALS = """
SELECT s.number, s.after_tx_id::text, s.after_position, s.to_tx_id::text, s.to_position,
       s.from_position, s.events, s.events_digest, s.previous, s.hash, s.key_id, s.signature,
       (extract(epoch FROM s.sealed_at) * 1000000)::bigint, k.public_key
FROM seals AS s LEFT JOIN seal_keys AS k USING (key_id)
WHERE s.number BETWEEN %(first)s AND %(last)s
ORDER BY s.number
"""


RECENT = 10_000  # streams whose last hash is kept (see _Links)
LAST = 2**63 - 1  # above every seal number and position
END = (2**64 - 1, LAST)  # the log's end: above every place (tx_id, position)


class Part(msgspec.Struct, frozen=True, kw_only=True):
    """Seals `first` to `last` and the events after `start` up to `end`.

    `start` and `previous` are where the seal before `first` ended and its
    hash, as stored (nothing before seal 1): the part's first seal must chain
    to them. `end` is the last seal's end; the last part has none.
    """

    first: int
    last: int = LAST
    start: tuple[int, int] = (0, 0)
    previous: str = ""
    end: tuple[int, int] = END


class Seal(msgspec.Struct, frozen=True, kw_only=True):
    body: SealBody
    hash: str
    signature: str
    public_key: str | None

    @property
    def number(self) -> int:
        return self.body.number

    @property
    def end(self) -> tuple[int, int]:
        return (self.body.to_tx_id, self.body.to_position)


class Report(msgspec.Struct, kw_only=True):
    faults: list[str] = msgspec.field(default_factory=list)
    events: int = 0
    seals: int = 0
    unsealed: int = 0
    last_seal: tuple[int, str] | None = None


_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))")
_SIMPLE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}


def _unescape_match(m: re.Match[bytes]) -> bytes:
    octal, hexa, char = m.groups()
    if octal:
        return bytes([int(octal, 8) & 0xFF])
    if hexa:
        return bytes([int(hexa, 16)])
    return _SIMPLE.get(char, char)


def _unescape(value: bytes) -> bytes:
    """A value of COPY's text format as the bytes it stands for."""
    return _ESCAPE.sub(_unescape_match, value) if b"\\" in value else value


def columns(line: bytes) -> list[bytes]:
    """A row of `EVENTS` as COPY sends it (its newline included): its values.
    (The check's own loop does the same inline.)"""
    cols = line[:-1].split(b"\t")
    return [_unescape(c) for c in cols] if b"\\" in line else cols


def check_part(
    events_conn: psycopg.Connection[Any],
    seals_conn: psycopg.Connection[Any],
    part: Part,
    *,
    xmax: int,
    public_key: Ed25519PublicKey | None,
    expect: dict[int, str],
    progress: Callable[[int], None],
    recent: int,
) -> Report:
    """Check one part; `expect` loses the seal numbers that were found."""
    report = Report()
    seals = _seal_rows(seals_conn, part)
    checker = _SealChecker(report, public_key, expect, part.first, part.start, part.previous)
    checker.next_seal(seals)
    links = _Links(report, seals_conn, recent)
    bounds = {"tx": part.start[0], "position": part.start[1]}
    bounds |= {"to_tx": part.end[0], "to_position": part.end[1]}
    with events_conn.cursor() as cur, cur.copy(EVENTS, bounds) as copy:
        _check_events(report, copy, xmax, links, checker, seals, progress)
    links.resolve()
    checker.finish(seals)
    return report


def _seal_rows(conn: psycopg.Connection[Any], part: Part) -> Iterator[Seal]:
    with conn.cursor(name="seals") as cur:
        cur.itersize = 1000
        cur.execute(_SEALS, {"first": part.first, "last": part.last})
        for r in cur:
            body = SealBody(
                number=r[0],
                after_tx_id=int(r[1]),
                after_position=r[2],
                to_tx_id=int(r[3]),
                to_position=r[4],
                from_position=r[5],
                events=r[6],
                events_digest=r[7],
                previous=r[8],
                key_id=r[10],
                sealed_at_us=r[12],
            )
            yield Seal(body=body, hash=r[9], signature=r[11], public_key=r[13])


_BEFORE_ALL = (-1, -1)

# The fields of the encoding (projections/chain.py), all but the first in one
# formatting operation: the hot loop of a verifier that reads a million
# events. An event id (a UUID's text) is always 36 bytes long; the type and
# schema version come encoded with their decoder, one look-up for the two.
_FIELD = b"%d:%b\n"
_BODY = b"%d:%b\n%d:%b\n%d:%b\n%d:%b\n36:%b\n%b%d:%b\n%d:%b\n%d:%b\n"
_LINKED = _FIELD + _BODY  # the same, after the predecessor's hash
Kind = tuple[msgspec.json.Decoder[Any] | None, bytes]


def _kind(type_: bytes, schema: bytes, cls: type[Any] | None = None) -> Kind:
    """Without `cls`: an older version (read as the current one) or one this
    code cannot read."""
    fields = _FIELD % (len(type_), type_) + _FIELD % (len(schema), schema)
    return (None if cls is None else msgspec.json.Decoder(cls), fields)


KINDS = {
    (type_, schema): _kind(type_, schema, cls)
    for cls in LOGGED_TYPES.values()
    for type_, schema in [(cls.TYPE.encode(), b"%d" % cls.SCHEMA_VERSION)]
}


def _check_events(
    report: Report,
    rows: Iterable[Buffer],
    xmax: int,
    links: _Links,
    checker: _SealChecker,
    seals: Iterator[Seal],
    progress: Callable[[int], None],
) -> None:
    """Check each event (a line of COPY's text output) and pass it to the seals.

    One loop with everything it touches in local names: it runs once per event.
    """
    faults = report.faults
    sha256 = hashlib.sha256
    kinds = KINDS
    linked = _LINKED
    body = _BODY
    recent, older = links.recent, links.older
    size = links.size
    # The first event goes to `event`, which notes where its seal starts.
    seal_end, add = _BEFORE_ALL, checker.add
    count = covered = 0
    for message in rows:
        # PostgreSQL sends each row of a COPY as one message, newline included.
        line = bytes(message)
        cols = line.split(b"\t")
        if b"\\" in line:
            cols = [_unescape(c) for c in cols]
        (position, tx_id, stream_id, version, event_id, type_, schema, data, metadata, at,
         stored) = cols  # fmt: skip
        stored = stored[:-1]
        if version == b"1":
            number = 1
            previous: bytes | None = b""
        else:
            number = int(version)
            link = recent.get(stream_id)
            if link is None or link[0] != number - 1:
                link = older.get(stream_id)
            previous = link[1] if link is not None and link[0] == number - 1 else None
        recent[stream_id] = (number, stored)
        if len(recent) >= size:
            older = links.older = recent
            recent = links.recent = {}
        decoder, kind = kinds.get((type_, schema)) or _kind(type_, schema)
        fields = (
            len(position), position,
            len(tx_id), tx_id,
            len(stream_id), stream_id,
            len(version), version,
            event_id,
            kind,
            len(data), data,
            len(metadata), metadata,
            len(at), at,
        )  # fmt: skip
        if previous is None:
            links.wait(position, stream_id, number, stored, body % fields)
        elif sha256(linked % (len(previous), previous, *fields)).hexdigest().encode() != stored:
            faults.append(f"position {int(position)}: the hash does not match the event's contents")
        place = (int(tx_id), int(position))
        if place[0] >= xmax:
            faults.append(f"position {int(position)}: written by a transaction not yet begun")
        try:
            if decoder is not None:
                decoder.decode(data)
            else:
                upcasting.decode(type_.decode(errors="replace"), int(schema), data)
        except upcasting.UnknownEventVersion as error:
            faults.append(f"position {int(position)}: {error}")
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError, KeyError) as error:
            faults.append(
                f"position {int(position)}: does not decode as"
                f" {type_.decode(errors='replace')}: {error}"
            )
        if place <= seal_end:  # the usual case: the event is in the seal of the one before
            add(stored)
            covered += 1
        else:
            checker.event(place, stored, seals, covered)
            seal_end, add = checker.seal_end, checker.add
            covered = 0
        count += 1
        if count % 10_000 == 0:
            progress(10_000)
    checker.added(covered)
    progress(count % 10_000)
    report.events += count


class _Links:
    """The stored hash of each event's predecessor in its stream, which its
    own hash covers.

    A stream's next event nearly always follows its previous one closely in
    reading order, so the last event read of each stream is kept in memory,
    for at least `size` streams and at most twice as many (two generations; the
    older is dropped when the newer fills), so memory stays flat however long
    the log. An event whose predecessor is not there (read long before, read
    after it, or missing) waits, and the waiting ones are looked up together,
    by index, on the second connection, in the same snapshot.
    """

    BATCH = 1000

    def __init__(self, report: Report, conn: psycopg.Connection[Any], size: int) -> None:
        self._report = report
        self._conn = conn
        self.size = max(size, 1)
        self.recent: dict[bytes, tuple[int, bytes]] = {}
        self.older: dict[bytes, tuple[int, bytes]] = {}
        self._waiting: list[tuple[bytes, bytes, int, bytes, bytes]] = []

    def wait(
        self, position: bytes, stream: bytes, version: int, stored: bytes, body: bytes
    ) -> None:
        """`body`: the encoding of every field but the predecessor's hash."""
        self._waiting.append((position, stream, version, stored, body))
        if len(self._waiting) >= self.BATCH:
            self.resolve()

    def resolve(self) -> None:
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        found: dict[int, str] = dict(
            self._conn.execute(
                _PREDECESSORS,
                {
                    "streams": [stream.decode() for _, stream, _, _, _ in waiting],
                    "versions": [version - 1 for _, _, version, _, _ in waiting],
                },
            ).fetchall()
        )
        faults = self._report.faults
        for i, (position, _, version, stored, body) in enumerate(waiting, 1):
            previous = found.get(i)
            if previous is None:
                faults.append(
                    f"position {int(position)}: the event before it in its stream (version"
                    f" {version - 1}) is missing"
                )
                previous = ""
            link = previous.encode()
            encoded = _FIELD % (len(link), link) + body
            if hashlib.sha256(encoded).hexdigest().encode() != stored:
                faults.append(
                    f"position {int(position)}: the hash does not match the event's contents"
                )


class _SealChecker:
    """Walks the seals beside the events: each event belongs to the first seal
    whose end is not before it, and each seal must cover exactly its events.

    The event loop adds an event that falls within the current seal (nearly
    every one) itself, with `add`, up to `seal_end`, and counts those; it calls
    `event` for the others, with that count."""

    def __init__(
        self,
        report: Report,
        public_key: Ed25519PublicKey | None,
        expect: dict[int, str],
        number: int,
        start: tuple[int, int],
        previous_hash: str,
    ) -> None:
        self._report = report
        self._key = public_key
        self._expect = expect
        self._number = number  # the number the next seal must have
        self._end = start  # where the previous seal ended
        self._previous = previous_hash
        self._seal: Seal | None = None
        self.seal_end = _BEFORE_ALL
        self._digest = EventsDigest()
        self.add = self._digest.add_uncounted
        self._first: int | None = None
        self._keys: dict[str, Ed25519PublicKey | None] = {}

    def next_seal(self, seals: Iterator[Seal]) -> None:
        self._seal = next(seals, None)
        self.seal_end = _BEFORE_ALL if self._seal is None else self._seal.end
        self._digest = EventsDigest()
        self.add = self._digest.add_uncounted
        self._first = None
        if self._seal is not None:
            self._check_header(self._seal)

    def added(self, count: int) -> None:
        """`count` events were given to `add` since the last call of `event`."""
        self._digest.count += count

    def event(
        self, place: tuple[int, int], event_hash: bytes, seals: Iterator[Seal], added: int
    ) -> None:
        """An event after `seal_end`; `added`: as for `added`."""
        self.added(added)
        while self._seal is not None and place > self._seal.end:
            self._close(self._seal)
            self.next_seal(seals)
        if self._seal is None:
            self._report.unsealed += 1
            return
        if self._first is None:
            self._first = place[1]
        self._digest.add(event_hash)

    def finish(self, seals: Iterator[Seal]) -> None:
        while self._seal is not None:
            self._close(self._seal)
            self.next_seal(seals)

    def _check_header(self, seal: Seal) -> None:
        faults = self._report.faults
        n = seal.number
        if n != self._number:
            faults.append(f"seal {self._number}: missing (the next seal is {n})")
        body = seal.body
        if body.previous != self._previous:
            faults.append(f"seal {n}: does not chain to the seal before it")
        if (body.after_tx_id, body.after_position) != self._end:
            faults.append(f"seal {n}: does not start where the seal before it ended")
        if body.hash() != seal.hash:
            faults.append(f"seal {n}: the hash does not match the seal's contents")
        key = self._verifying_key(seal)
        if key is None:
            faults.append(f"seal {n}: signed by key {body.key_id}, which is not known")
        else:
            try:
                key.verify(bytes.fromhex(seal.signature), bytes.fromhex(seal.hash))
            except (InvalidSignature, ValueError):
                faults.append(f"seal {n}: the signature is not valid")
        wanted = self._expect.pop(n, None)
        if wanted is not None and wanted != seal.hash:
            faults.append(f"seal {n}: the hash is not the one expected ({wanted})")
        self._number = n + 1
        self._end = seal.end
        self._previous = seal.hash
        self._report.seals += 1
        self._report.last_seal = (n, seal.hash)

    def _close(self, seal: Seal) -> None:
        faults = self._report.faults
        if self._digest.count != seal.body.events:
            faults.append(
                f"seal {seal.number}: covers {self._digest.count} events in the log,"
                f" sealed {seal.body.events}"
            )
        elif self._digest.hexdigest() != seal.body.events_digest:
            faults.append(f"seal {seal.number}: the events it covers are not the ones sealed")
        elif self._first is not None and self._first != seal.body.from_position:
            faults.append(f"seal {seal.number}: does not start at the event sealed first")

    def _verifying_key(self, seal: Seal) -> Ed25519PublicKey | None:
        if self._key is not None:
            return self._key
        key_id = seal.body.key_id
        if key_id not in self._keys:
            self._keys[key_id] = None
            if seal.public_key is not None:
                loaded = load_pem_public_key(seal.public_key.encode())
                if isinstance(loaded, Ed25519PublicKey) and key_id == key_id_of(loaded):
                    self._keys[key_id] = loaded
        return self._keys[key_id]


def key_id_of(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()
