"""What the hash chain costs an append: events/s with and without it.

    uv run --group bench python -m bench.chain [--quick] [--events N]
    uv run --group bench python -m bench.chain --serve [--quick] [--rounds N]

Appends go through `commands.event_store.append`, what the service's writes
use, as smsq_service: transactions of 64 messages (a full group commit), one
new stream each. "Off" replaces the trigger's function with one that fills
`position`, `recorded_at` and `tx_id` but writes a constant hash: the same
statement and trigger, without the predecessor lookup and the SHA-256.
"No trigger" is the log as it was before the chain: defaults fill those
columns, no trigger runs. Rounds alternate between the three, so that other
load on the machine falls on all alike; the table gives the median of each.

`--serve` measures what the issue's goal names, the whole service: the
maximum of `POST /messages` on `smsq serve` (wrk, as `bench.ingest` measures
it, a fresh server for each run) with everything on, against the same with
the sealer off (`SMSQ_RUN_SEALER=false`) and the chain's trigger disabled in
that throwaway database (defaults fill the columns, as before the chain).
Rounds alternate on and off.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

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
from domain.events import EventMetadata, SmsReceived, stream_of

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
$$
"""

_NONE = """
ALTER TABLE events DISABLE TRIGGER events_fill;
ALTER TABLE events ALTER COLUMN position SET DEFAULT nextval('events_position_seq'),
    ALTER COLUMN recorded_at SET DEFAULT clock_timestamp(),
    ALTER COLUMN tx_id SET DEFAULT pg_current_xact_id(),
    ALTER COLUMN hash SET DEFAULT repeat('0', 64);
"""

# For `smsq serve`, which writes as smsq_service: the default draws from the sequence.
_SERVICE_DRAWS = "GRANT USAGE ON SEQUENCE events_position_seq TO smsq_service"

_SEALED_AND_CHAINED = """
SELECT EXISTS (SELECT 1 FROM seals), EXISTS (SELECT 1 FROM events WHERE hash <> repeat('0', 64))
"""


async def ingest(url: str, events: int) -> float:
    """Events/s appending `events` new messages in transactions of BATCH."""
    meta = EventMetadata(correlation_id=uuid7(), causation_id=uuid7(), actor="bench")
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for _ in range(events // BATCH):
            appends = []
            for _ in range(BATCH):
                received = SmsReceived(
                    message_id=uuid7(),
                    from_="+12025550123",
                    to="+447911123456",
                    message="chain",
                    received_at=now,
                )
                appends.append(Append(stream_of(received.message_id), 0, [received], meta))
            async with conn.transaction():
                await (await append(conn, appends)).places()
        return (events // BATCH * BATCH) / (time.perf_counter() - started)


def bench(server: Server, quick: bool, events: int | None, rounds: int) -> int:
    per_round = events or (5_000 if quick else 20_000)
    on_url, off_url = server.create("chain_on"), server.create("chain_off")
    none_url = server.create("chain_none")
    with psycopg.connect(off_url, autocommit=True) as conn:
        conn.execute(_OFF)
    with psycopg.connect(none_url, autocommit=True) as conn:
        conn.execute(_NONE)
    on: list[float] = []
    off: list[float] = []
    none: list[float] = []
    for _ in range(rounds):
        on.append(asyncio.run(ingest(as_role(on_url, "smsq_service"), per_round)))
        off.append(asyncio.run(ingest(as_role(off_url, "smsq_service"), per_round)))
        # As the owner: the service may not draw from the sequence a default would use.
        none.append(asyncio.run(ingest(none_url, per_round)))
    with psycopg.connect(on_url) as conn:
        broken = conn.execute(
            "SELECT count(*) FROM events WHERE hash = event_hash(NULL, position, tx_id, stream_id,"
            " version, event_id, type, schema_version, data, metadata, recorded_at) IS NOT TRUE"
        ).fetchone()
    assert broken == (0,)
    ratio = statistics.median(on) / statistics.median(off)
    print(
        table(
            ["chain", "events/s per round", "median"],
            [
                ["on", ", ".join(f"{r:,.0f}" for r in on), statistics.median(on)],
                ["off", ", ".join(f"{r:,.0f}" for r in off), statistics.median(off)],
                ["no trigger", ", ".join(f"{r:,.0f}" for r in none), statistics.median(none)],
            ],
        )
    )
    print(
        table(
            ["goal", "measured", "verdict"],
            [
                ["chain on >= 0.95x off", f"{ratio:.2f}x", verdict(ratio >= 0.95)],
                [
                    "chain on >= 0.95x no trigger",
                    f"{statistics.median(on) / statistics.median(none):.2f}x",
                    verdict(statistics.median(on) >= 0.95 * statistics.median(none)),
                ],
            ],
        )
    )
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
    parser.add_argument("--events", type=int, help="events per round")
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
        raise SystemExit(bench(server, args.quick, args.events, args.rounds or 3))


if __name__ == "__main__":
    main()
