"""The benchmark data generator is deterministic and makes only valid input."""

from __future__ import annotations

import phonenumbers

from bench.datagen import message_rows, phones


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
