"""Deterministic benchmark data: the same seed gives the same bytes, every run.

Phone numbers are real-looking and valid for libphonenumber (the API refuses
anything else); read-model rows go into PostgreSQL with COPY, secondary
indexes built after the load, as a restore would.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
import psycopg

from tests.support.seed import message_id_at

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_AREAS = ("202", "212", "305", "415", "512", "617", "718", "206", "303", "404", "312", "713")
RECIPIENTS = ("+447911123456", "+33612345678", "+4915112345678", "+14155550100")
TEXTS = ("Hello", "Your code is 123456", "Ça va? 👍", "On my way", "x" * 160)


def phones(count: int, seed: int) -> list[str]:
    """`count` distinct valid US numbers, the same for the same seed."""
    rng = random.Random(seed)
    found: dict[str, None] = {}
    while len(found) < count:
        number = f"+1{rng.choice(_AREAS)}{rng.randint(200, 999)}{rng.randrange(10_000):04d}"
        if number not in found and phonenumbers.is_valid_number(phonenumbers.parse(number)):
            found[number] = None
    return list(found)


def zipf_weights(count: int) -> list[float]:
    """Cumulative weights 1/rank: a few very busy senders and a long tail."""
    return list(itertools.accumulate(1 / rank for rank in range(1, count + 1)))


def zipf_senders(senders: list[str], seed: int) -> Iterator[str]:
    """An endless stream of senders, Zipf-distributed as in `message_rows`."""
    rng = random.Random(seed)
    weights = zipf_weights(len(senders))
    while True:
        yield from rng.choices(senders, cum_weights=weights, k=10_000)


def message_rows(count: int, senders: list[str], seed: int) -> Iterator[tuple[Any, ...]]:
    """`sms_messages` rows: senders Zipf-distributed, 3 % not yet processed, 20 ms apart."""
    rng = random.Random(seed)
    chosen = rng.choices(senders, cum_weights=zipf_weights(len(senders)), k=count)
    for i, sender in enumerate(chosen):
        at = T0 + timedelta(milliseconds=20 * i)
        processed = rng.random() >= 0.03
        text = rng.choice(TEXTS)
        yield (
            message_id_at(at, rng),
            sender,
            rng.choice(RECIPIENTS),
            text,
            at,
            "processed" if processed else "stored",
            0,
            at + timedelta(milliseconds=40) if processed else None,
            ("GSM-7" if text.isascii() else "UCS-2") if processed else None,
            1 if processed else None,
            "US" if processed else None,
            None,
        )


_MESSAGE_COLUMNS = (
    'id, "from", "to", message, received_at, status, media_count,'
    " processed_at, encoding, segments, from_region, to_region"
)


def copy_messages(url: str, rows: Iterator[tuple[Any, ...]]) -> int:
    """COPY rows into `sms_messages`, rebuilding its secondary indexes afterwards."""
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sms_messages'"
            " AND indexname <> 'sms_messages_pkey'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        written = 0
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY sms_messages ({_MESSAGE_COLUMNS}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
                written += 1
        conn.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("VACUUM (ANALYZE) sms_messages")
    return written
