"""The benchmark data generator is deterministic and makes only valid input."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import phonenumbers

from bench.datagen import message_rows, phones, zipf_senders
from domain.events import SmsReceived
from tests.support.seed import T0, message_events


def test_the_same_seed_gives_the_same_phones_and_rows() -> None:
    assert phones(200, seed=4) == phones(200, seed=4)
    assert phones(200, seed=4) != phones(200, seed=5)
    senders = phones(50, seed=4)
    assert list(message_rows(500, senders, seed=9)) == list(message_rows(500, senders, seed=9))


def test_phones_are_distinct_and_valid_e164() -> None:
    numbers = phones(500, seed=1)
    assert len(set(numbers)) == 500
    for number in numbers:
        parsed = phonenumbers.parse(number)
        assert phonenumbers.is_valid_number(parsed)
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == number


def test_senders_are_skewed_so_deep_pages_exist() -> None:
    senders = phones(100, seed=2)
    rows = list(message_rows(10_000, senders, seed=2))
    busiest = sum(1 for r in rows if r[1] == senders[0])
    rarest = sum(1 for r in rows if r[1] == senders[-1])
    assert busiest > 10 * max(rarest, 1)


def test_zipf_senders_are_deterministic_and_skewed_like_the_rows() -> None:
    senders = phones(100, seed=2)
    stream = list(itertools.islice(zipf_senders(senders, seed=5), 30_000))
    assert stream == list(itertools.islice(zipf_senders(senders, seed=5), 30_000))
    busiest, rarest = stream.count(senders[0]), stream.count(senders[-1])
    assert busiest > 50 * max(rarest, 1)


def test_message_events_take_their_senders_and_start_time_when_given() -> None:
    start = T0 + timedelta(days=3)
    received = [
        e
        for _, _, e in message_events(50, seed=1, start=start, from_=iter(["+12025550123"] * 50))
        if isinstance(e, SmsReceived)
    ]
    assert [e.from_ for e in received] == ["+12025550123"] * 50
    assert [e.received_at for e in received] == [
        start + timedelta(milliseconds=20 * i) for i in range(50)
    ]


def test_seeded_ids_are_version_7_in_arrival_order_as_the_service_makes_them() -> None:
    received = [e for _, _, e in message_events(500, seed=4) if isinstance(e, SmsReceived)]
    rows = list(message_rows(500, phones(20, seed=4), seed=4))
    for ids, times in (
        ([e.message_id for e in received], [e.received_at for e in received]),
        ([r[0] for r in rows], [r[4] for r in rows]),
    ):
        assert {i.version for i in ids} == {7}
        assert {i.variant for i in ids} == {uuid.RFC_4122}
        assert len(set(ids)) == len(ids)
        assert ids == sorted(ids)  # arrival order is id order: the index grows at its edge
        assert [i.int >> 80 for i in ids] == [int(t.timestamp() * 1000) for t in times]
