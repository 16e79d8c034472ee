"""Checking the log from the database alone: every event hash, every seal,
every key.

The verifier reads with nothing but SELECT (the auditor's role), in one
snapshot. The seals split the log into parts of about equal size, checked
side by side in several processes (projections/verify_part.py): hashing and
decoding a million events is CPU work, and one process would leave the
other cores idle. There are a few parts per process, taken as each process
comes free, so that none waits idle at the end for the slowest (a process
that starts late, a core shared with the server). Each fault is a line
naming a position, a seal or a key.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

import msgspec
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from psycopg import sql

from domain import upcasting
from domain.access import STREAM, ApiKeyCreated, ApiKeyRevoked, Keys, access_decider
from projections.verify_part import RECENT, Part, Report, check_part

# A part has this many events at least, and a process this many parts: a
# process for fewer than 200,000 events would cost more than it saves.
PART_EVENTS = 50_000
PARTS_PER_PROCESS = 4

# Where the parts meet: the last seal of each share of the sealed events but
# the last share (whose part runs on to the log's end), with its end and hash.
_SPLITS = """
SELECT DISTINCT ON (share) number, to_tx_id::text, to_position, hash
FROM (
    SELECT number, to_tx_id, to_position, hash,
           (sum(greatest(events, 1)) OVER (ORDER BY number) - 1) * %(parts)s
               / sum(greatest(events, 1)) OVER () AS share
    FROM seals WHERE number >= %(from)s
) AS s
WHERE share < %(parts)s - 1
ORDER BY share, number DESC
"""


def verify(
    url: str,
    *,
    public_key: Ed25519PublicKey | None = None,
    from_seal: int = 1,
    expect: dict[int, str] | None = None,
    progress: Callable[[int], None] = lambda _: None,
    jobs: int | None = None,
    part_events: int = PART_EVENTS,
    recent: int = RECENT,
) -> Report:
    """Check everything the database holds from seal `from_seal` on (and the
    events after its predecessor's end). `expect`: seal numbers and the hashes
    the auditor kept, so that a log cut short is noticed. `jobs`: processes
    at most (default: one per CPU), each given `part_events` at least.
    `recent`: streams whose last hash each keeps (projections/verify_part.py)."""
    report = Report()
    expect = dict(expect or {})
    with psycopg.connect(url) as events_conn, psycopg.connect(url) as seals_conn:
        snapshot, xmax = _begin(events_conn)
        _join(seals_conn, snapshot)
        whole = Part(first=from_seal)
        if from_seal > 1:
            before = seals_conn.execute(
                "SELECT to_tx_id::text, to_position, hash FROM seals WHERE number = %s",
                (from_seal - 1,),
            ).fetchone()
            if before is None:
                report.faults.append(f"seal {from_seal - 1}: missing")
            else:
                start = (int(before[0]), before[1])
                whole = Part(first=from_seal, start=start, previous=before[2])
        processes, parts = _split(
            seals_conn, whole, jobs or len(os.sched_getaffinity(0)), part_events
        )
        raw = (
            None if public_key is None else public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        task = _Task(url=url, snapshot=snapshot, xmax=xmax, public_key=raw, recent=recent)
        # Each part is given the expected seals in its range, and gives back those it did not find.
        shares = [{n: expect.pop(n) for n in list(expect) if p.first <= n <= p.last} for p in parts]
        conns = (events_conn, seals_conn)
        for found, left in _check_parts(task, conns, processes, parts, shares, progress):
            report.faults += found.faults
            report.events += found.events
            report.seals += found.seals
            report.unsealed += found.unsealed
            report.last_seal = found.last_seal or report.last_seal
            expect |= left
        _check_keys(report, events_conn)
    for number, wanted in sorted(expect.items()):
        report.faults.append(f"seal {number}: expected with hash {wanted}, not in the database")
    return report


def _begin(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    """Open the snapshot every part reads; its name, and the first transaction after it."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    # The log in index order, never sorted (see verify_part.EVENTS).
    conn.execute("SET LOCAL enable_sort = off")
    row = conn.execute(
        "SELECT pg_export_snapshot(), pg_snapshot_xmax(pg_current_snapshot())::text"
    ).fetchone()
    assert row is not None
    return row[0], int(row[1])


def _join(conn: psycopg.Connection[Any], snapshot: str) -> None:
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    conn.execute("SET LOCAL enable_sort = off")


def _split(
    conn: psycopg.Connection[Any], whole: Part, jobs: int, part_events: int
) -> tuple[int, list[Part]]:
    """How many processes check `whole` (at most `jobs`), and its parts, of
    about equal numbers of sealed events: `PARTS_PER_PROCESS` for each
    process, each of `part_events` at least."""
    row = conn.execute(
        "SELECT coalesce(sum(greatest(events, 1)), 0) FROM seals WHERE number >= %s",
        (whole.first,),
    ).fetchone()
    most = (row[0] if row else 0) // max(part_events, 1)  # parts of part_events
    processes = min(jobs, most // PARTS_PER_PROCESS)
    if processes < 2:
        return 1, [whole]
    count = processes * PARTS_PER_PROCESS
    parts = []
    first, start, previous = whole.first, whole.start, whole.previous
    for number, to_tx, to_position, hash_ in conn.execute(
        _SPLITS, {"from": whole.first, "parts": count}
    ):
        end = (int(to_tx), to_position)
        parts.append(Part(first=first, last=number, start=start, previous=previous, end=end))
        first, start, previous = number + 1, end, hash_
    return processes, [*parts, Part(first=first, start=start, previous=previous)]


class _Task(msgspec.Struct, frozen=True, kw_only=True):
    """What the check of every part needs besides the part."""

    url: str
    snapshot: str
    xmax: int
    public_key: bytes | None  # raw
    recent: int

    def check(
        self,
        conns: tuple[psycopg.Connection[Any], psycopg.Connection[Any]],
        part: Part,
        expect: dict[int, str],
        progress: Callable[[int], None],
    ) -> tuple[Report, dict[int, str]]:
        key = (
            None if self.public_key is None else Ed25519PublicKey.from_public_bytes(self.public_key)
        )
        report = check_part(
            *conns, part, xmax=self.xmax, public_key=key, expect=expect, progress=progress,
            recent=self.recent,
        )  # fmt: skip
        return report, expect


def _check_parts(
    task: _Task,
    conns: tuple[psycopg.Connection[Any], psycopg.Connection[Any]],
    processes: int,
    parts: list[Part],
    shares: list[dict[int, str]],
    progress: Callable[[int], None],
) -> list[tuple[Report, dict[int, str]]]:
    """Every part, in `processes` processes, this one among them, on `conns`.
    The others take the parts from the first on, this one from the last on,
    each the next that no one has begun, until none is left; their progress
    comes back through a queue. The reports come back in the order of the parts."""
    if len(parts) == 1:
        return [task.check(conns, parts[0], shares[0], progress)]
    context = multiprocessing.get_context(_start_method())
    counts: multiprocessing.Queue[int] = context.Queue()
    untaken = _Untaken(context.Array("q", [0, len(parts) - 1]))

    def tell(n: int) -> None:
        progress(n)
        with contextlib.suppress(queue.Empty):
            while True:
                progress(counts.get_nowait())

    done: dict[int, tuple[Report, dict[int, str]]] = {}
    with ProcessPoolExecutor(
        processes - 1,
        mp_context=context,
        initializer=_share,
        initargs=(counts, untaken.bounds),
    ) as pool:
        others = [pool.submit(_check_from_first, task, parts, shares) for _ in range(processes - 1)]
        while (i := untaken.take(last=True)) is not None:
            done[i] = task.check(conns, parts[i], shares[i], tell)
        pending = set(others)
        while pending:
            _, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            tell(0)
    tell(0)
    for future in others:
        done |= future.result()
    return [done[i] for i in range(len(parts))]


def _start_method() -> str:
    """Fork, when this process runs no other thread: the other processes start
    at once, with everything imported (a process that imports the verifier
    anew costs what checking some 50,000 events does). Spawn otherwise: a fork
    would copy the other threads' locks in whatever state they were in."""
    return "fork" if threading.active_count() == 1 else "spawn"


class _Untaken:
    """The parts no process has begun: from `bounds[0]` to `bounds[1]`, shared
    by the processes (an array with its lock)."""

    def __init__(self, bounds: Any) -> None:
        self.bounds = bounds

    def take(self, *, last: bool) -> int | None:
        """The first or the last of them, now taken; None when none is left."""
        with self.bounds.get_lock():
            first, end = self.bounds[0], self.bounds[1]
            if first > end:
                return None
            if last:
                self.bounds[1] = end - 1
                return int(end)
            self.bounds[0] = first + 1
            return int(first)


# In a pool's process: where progress goes, and the parts no process has begun.
_counts: multiprocessing.Queue[int] | None = None
_untaken: _Untaken | None = None


def _share(counts: multiprocessing.Queue[int], bounds: Any) -> None:
    global _counts, _untaken
    _counts, _untaken = counts, _Untaken(bounds)


def _check_from_first(
    task: _Task, parts: list[Part], shares: list[dict[int, str]]
) -> dict[int, tuple[Report, dict[int, str]]]:
    """In a pool's process: the parts no process has begun, from the first on,
    on connections of its own in the same snapshot."""
    assert _counts is not None
    assert _untaken is not None
    done = {}
    with psycopg.connect(task.url) as events_conn, psycopg.connect(task.url) as seals_conn:
        _join(events_conn, task.snapshot)
        _join(seals_conn, task.snapshot)
        while (i := _untaken.take(last=False)) is not None:
            done[i] = task.check((events_conn, seals_conn), parts[i], shares[i], _counts.put)
    return done


def _check_keys(report: Report, conn: psycopg.Connection[Any]) -> None:
    """Each key's row says what the `access` stream's events say, and each key
    in the events has its row (a row edited back to life shows here)."""
    keys: Keys = access_decider.initial
    for type_, schema_version, data in conn.execute(
        "SELECT type, schema_version, data::text FROM events WHERE stream_id = %s ORDER BY version",
        (STREAM,),
    ):
        try:
            event = upcasting.decode(type_, schema_version, data.encode())
        except (msgspec.MsgspecError, upcasting.UnknownEventVersion, ValueError):
            continue  # reported with its position already
        if isinstance(event, ApiKeyCreated | ApiKeyRevoked) and (
            isinstance(event, ApiKeyCreated) or event.key_id in keys
        ):
            keys = access_decider.evolve(keys, event)
    rows = conn.execute(
        "SELECT id, scopes, rate_per_second, senders, revoked_at IS NOT NULL"
        " FROM api_keys ORDER BY id"
    )
    seen = set()
    for key_id, scopes, rate, senders, revoked in rows:
        seen.add(key_id)
        key = keys.get(key_id)
        if key is None:
            report.faults.append(f"key {key_id}: its row has no ApiKeyCreated event")
            continue
        if tuple(scopes) != key.scopes:
            report.faults.append(
                f"key {key_id}: its row's scopes {','.join(scopes)} are not its events'"
                f" {','.join(key.scopes)}"
            )
        if (rate, tuple(senders)) != (key.rate_per_second, key.senders):
            report.faults.append(f"key {key_id}: its row's limits are not its events'")
        if revoked != key.revoked:
            said = "revoked" if key.revoked else "not revoked"
            report.faults.append(f"key {key_id}: its events say {said}, its row does not")
    for key_id in sorted(set(keys) - seen):
        report.faults.append(f"key {key_id}: made by its events, but its row is gone")
