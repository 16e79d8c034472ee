"""What the hash chain costs an append: events/s with and without it.

    uv run --group bench python -m bench.chain [--quick] [--messages N]
    uv run --group bench python -m bench.chain --serve [--quick] [--rounds N]

Appends go through `commands.event_store.append`, what the service's writes
use, as smsq_service, as the service writes a message's two events: a
transaction of 64 `SmsReceived` (a full group commit), one new stream each,
then one of their 64 `SmsProcessed` (each chained to its stream's first
event). "Off" replaces the trigger's function with one that fills
`position`, `recorded_at` and `tx_id` but writes a constant hash, and drops
the check of the hash's format: the same statements and trigger, without
the predecessor lookup, the SHA-256 and the check. "No trigger" is the log
as it was before the chain: defaults fill those columns, no trigger runs,
nothing is checked. Rounds alternate between the three, so that other load
on the machine falls on all alike; the table gives the median of each, in
events/s and in the database's CPU time per event (which other load on the
machine disturbs less than the rate).

`--serve` measures what the issue's goal names, the whole service: the
maximum of `POST /messages` on `smsq serve` (wrk, as `bench.ingest` measures
it, a fresh server for each run) with everything on, against the same with
the sealer off (`SMSQ_RUN_SEALER=false`) and the chain's trigger and the
hash's check dropped in that throwaway database (defaults fill the columns,
as before the chain). Rounds alternate on and off.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from uuid_utils.compat import uuid7

from api.cli.support import as_role
from bench.harness import (
    Server,
    arguments,
    header,
    load_note,
    postgres,
    postmaster,
    stop_on_sigterm,
    table,
    verdict,
)
from bench.ingest import (
    CONNECTIONS,
    DEFAULT_WORKERS,
    Maximum,
    maximum,
    median_run,
    senders_file,
    served,
)
from commands.event_store import Append, append
from domain.events import EventMetadata, SmsProcessed, SmsReceived, stream_of
from tests.support.seed import processing

BATCH = 64

_OFF = """
CREATE OR REPLACE FUNCTION events_fill() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    NEW.position := nextval('events_position_seq');
    NEW.recorded_at := clock_timestamp();
    NEW.tx_id := pg_current_xact_id();
    NEW.hash := '0000000000000000000000000000000000000000000000000000000000000000';
    RETURN NEW;
END;
$$;
ALTER TABLE events DROP CONSTRAINT events_hash_check;
"""

_NONE = """
ALTER TABLE events DISABLE TRIGGER events_fill;
ALTER TABLE events ALTER COLUMN position SET DEFAULT nextval('events_position_seq'),
    ALTER COLUMN recorded_at SET DEFAULT clock_timestamp(),
    ALTER COLUMN tx_id SET DEFAULT pg_current_xact_id(),
    ALTER COLUMN hash SET DEFAULT repeat('0', 64),
    DROP CONSTRAINT events_hash_check;
"""

# For `smsq serve`, which writes as smsq_service: the default draws from the sequence.
_SERVICE_DRAWS = "GRANT USAGE ON SEQUENCE events_position_seq TO smsq_service"

_SEALED_AND_CHAINED = """
SELECT EXISTS (SELECT 1 FROM seals), EXISTS (SELECT 1 FROM events WHERE hash <> repeat('0', 64))
"""


async def ingest(url: str, messages: int) -> tuple[float, float]:
    """Events/s writing `messages` messages' two events in transactions of
    BATCH, and the database's CPU time per event (µs), when it runs here."""
    meta = EventMetadata(correlation_id=uuid7(), causation_id=uuid7(), actor="bench")
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        backend = await backend_process(conn)
        cpu = cpu_seconds(backend)
        started = time.perf_counter()
        for _ in range(messages // BATCH):
            received = [
                SmsReceived(
                    message_id=uuid7(),
                    from_="+12025550123",
                    to="+447911123456",
                    message="chain",
                    received_at=now,
                )
                for _ in range(BATCH)
            ]
            processed = [processing(r, now + timedelta(milliseconds=30)) for r in received]
            stages: list[list[SmsReceived] | list[SmsProcessed]] = [received, processed]
            for version, events in enumerate(stages):
                appends = [Append(stream_of(e.message_id), version, [e], meta) for e in events]
                async with conn.transaction():
                    await (await append(conn, appends)).places()
        written = messages // BATCH * BATCH * 2
        spent = cpu_seconds(backend) - cpu
        return written / (time.perf_counter() - started), spent / written * 1e6


async def backend_process(conn: psycopg.AsyncConnection[Any]) -> psutil.Process | None:
    cur = await conn.execute("SELECT pg_backend_pid()")
    row = await cur.fetchone()
    try:
        return psutil.Process(row[0]) if row else None
    except psutil.Error:  # the database runs elsewhere
        return None


def cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return math.nan
    times = process.cpu_times()
    return times.user + times.system


def bench(server: Server, quick: bool, messages: int | None, rounds: int) -> int:
    per_round = messages or (2_500 if quick else 10_000)
    owner = {name: server.create(f"chain_{i}") for i, name in enumerate(("on", "off", "none"))}
    for name, change in (("off", _OFF), ("none", _NONE)):
        with psycopg.connect(owner[name], autocommit=True) as conn:
            conn.execute(change)
    # As the owner without the trigger: the service may not draw from the
    # sequence a default would use.
    urls = {name: as_role(url, "smsq_service") for name, url in owner.items() if name != "none"}
    urls["none"] = owner["none"]
    rates: dict[str, list[float]] = {name: [] for name in urls}
    costs: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(rounds):
        for name, url in urls.items():
            per_second, per_event = asyncio.run(ingest(url, per_round))
            rates[name].append(per_second)
            costs[name].append(per_event)
    with psycopg.connect(owner["on"]) as conn:
        broken = conn.execute(
            "SELECT count(*) FROM events e LEFT JOIN events p"
            " ON p.stream_id = e.stream_id AND p.version = e.version - 1"
            " WHERE e.hash = event_hash(p.hash, e.position, e.tx_id, e.stream_id, e.version,"
            " e.event_id, e.type, e.schema_version, e.data, e.metadata, e.recorded_at)"
            " IS NOT TRUE"
        ).fetchone()
    assert broken == (0,)
    rate = {name: statistics.median(r) for name, r in rates.items()}
    cost = {name: statistics.median(c) for name, c in costs.items()}
    labels = {"on": "on", "off": "off", "none": "no trigger"}
    print(
        table(
            ["chain", "events/s per round", "median", "database CPU µs/event (median)"],
            [
                [labels[name], ", ".join(f"{r:,.0f}" for r in rates[name]), rate[name], cost[name]]
                for name in urls
            ],
        )
    )
    goals = [
        [
            f"chain on >= 0.95x {labels[name]}",
            f"{rate['on'] / rate[name]:.2f}x",
            verdict(rate["on"] >= 0.95 * rate[name]),
        ]
        for name in ("off", "none")
    ]
    if not math.isnan(cost["on"]):
        goals.append(["what the chain adds per event", f"{cost['on'] - cost['off']:.1f} µs", ""])
    print(table(["goal", "measured", "verdict"], goals))
    return 0


def serve(server: Server, quick: bool, rounds: int, logs: Path) -> int:
    """Ingest maximum of `smsq serve`, chain and sealer on against both off."""
    seconds, warm = (4, 2) if quick else (15, 3)
    on_url, off_url = server.create("serve_on"), server.create("serve_off")
    with psycopg.connect(off_url, autocommit=True) as conn:
        conn.execute(_NONE)
        conn.execute(_SERVICE_DRAWS)
    arms = {
        "on": (on_url, {}),
        "off": (off_url, {"SMSQ_RUN_SEALER": "false"}),
    }
    senders = senders_file(logs)
    offset = 0
    runs: dict[str, list[Maximum]] = {"on": [], "off": []}
    database = postmaster(on_url)
    for n in range(1, rounds + 1):
        # On then off, then off then on: neither always follows the other.
        for arm, (url, settings) in list(arms.items())[:: 1 if n % 2 else -1]:
            with served("smsq", url, DEFAULT_WORKERS, logs, settings) as (base, pid):
                print(f"round {n}, chain and sealer {arm} ({load_note()})", flush=True)
                measured, offset = maximum(
                    base, (senders, offset), seconds, warm, (pid, database), url
                )
                runs[arm].append(measured)
    # The arms were what they say: seals and real hashes in one, neither in the other.
    for url, chained in ((on_url, True), (off_url, False)):
        with psycopg.connect(url) as conn:
            row = conn.execute(_SEALED_AND_CHAINED).fetchone()
        assert row == (chained, chained), (url, row)
    rows = []
    for arm in runs:
        middle = median_run(runs[arm])
        rows.append(
            [
                arm,
                ", ".join(f"{m.run.rps:,.0f}" for m in runs[arm]),
                middle.run.rps,
                middle.run.describe_unexpected(201),
                middle.per_request(middle.app_cpu),
                middle.per_request(middle.db_cpu),
            ]
        )
    print()
    print(
        f"Maximum of POST /messages, wrk closed loop, {CONNECTIONS} connections, {seconds} s,"
        f" a fresh smsq serve per run, {rounds} alternating round(s):"
    )
    print(
        table(
            [
                "chain and sealer",
                "req/s per round",
                "median",
                "not 201",
                "app CPU us/req",
                "PostgreSQL CPU us/req",
            ],
            rows,
        )
    )
    on = median_run(runs["on"]).run.rps
    off = median_run(runs["off"]).run.rps
    print(
        table(
            ["goal", "measured", "verdict"],
            [
                [
                    "ingest, chain and sealer on >= 0.95x off",
                    f"{on / off:.2f}x",
                    verdict(on >= 0.95 * off),
                ]
            ],
        )
    )
    print(f"after the run: {load_note()}")
    return 0


def main() -> None:
    parser = arguments(__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, help="messages per round (two events each)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --serve --quick)")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="measure smsq serve's ingest maximum with chain and sealer on against off",
    )
    args = parser.parse_args()
    stop_on_sigterm()
    with postgres(args.database_url) as server, tempfile.TemporaryDirectory() as tmp:
        if args.serve:
            header("Chain: ingest with the hash chain and the sealer on and off", server)
            rounds = args.rounds or (1 if args.quick else 3)
            raise SystemExit(serve(server, args.quick, rounds, Path(tmp)))
        header("Chain: appends with and without the hash chain", server)
        raise SystemExit(bench(server, args.quick, args.messages, args.rounds or 3))


if __name__ == "__main__":
    main()
