"""Given the key's earlier requests, when one more, then it is taken or over the
key's rate; and the numbers a key may send from."""

from datetime import UTC, datetime, timedelta

import pytest

from domain.key_limits import (
    KeyRate,
    KeyUsed,
    OverKeyRate,
    SenderNotAllowed,
    UseKey,
    check_sender,
    key_rate_decider,
    quota,
    tighter,
)
from domain.sender import Quota
from tests.support.deciders import Given, given

T0 = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
TWO = KeyRate(2.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def used(*seconds: float, rate: KeyRate = TWO) -> Given[UseKey, object, KeyUsed]:
    return given(key_rate_decider, *(KeyUsed(rate, at(s)) for s in seconds))


def test_a_fresh_key_has_a_full_bucket_of_one_seconds_worth() -> None:
    when = used().when(UseKey(TWO), T0)
    when.then(KeyUsed(TWO, T0))
    assert quota(when.state, TWO, T0) == Quota(limit=2, remaining=1, reset_after=1)


def test_past_the_bucket_the_request_is_refused_until_a_token_returns() -> None:
    over = used(0, 0).when(UseKey(TWO), at(0.1)).then_rejected(OverKeyRate)
    # 0.2 tokens came back in 0.1 s; 0.8 more take 0.4 s at 2/s: retry in 1 s (whole seconds).
    assert over.quota == Quota(limit=2, remaining=0, reset_after=1)
    assert over.retry_after == 1


def test_tokens_return_at_the_rate() -> None:
    used(0, 0).when(UseKey(TWO), at(0.5)).then(KeyUsed(TWO, at(0.5)))


def test_a_slow_rate_tells_how_long_to_wait() -> None:
    slow = KeyRate(0.1)
    over = used(0, rate=slow).when(UseKey(slow), at(1)).then_rejected(OverKeyRate)
    assert over.quota.limit == 1
    assert over.retry_after == 9


def test_the_bucket_never_holds_more_than_its_capacity() -> None:
    state = used(0).state
    assert quota(state, TWO, at(3600)) == Quota(limit=2, remaining=2, reset_after=0)


def test_a_clock_that_steps_back_refills_nothing() -> None:
    state = used(10, 10).state
    assert quota(state, TWO, at(5)).remaining == 0


@pytest.mark.parametrize(("text", "per_second"), [("20/s", 20.0), ("0.5/s", 0.5), (" 3 /s", 3.0)])
def test_a_rate_is_written_n_per_second(text: str, per_second: float) -> None:
    assert KeyRate.parse(text) == KeyRate(per_second)


@pytest.mark.parametrize("text", ["20", "20/m", "0/s", "-1/s", "x/s", "inf/s", "nan/s", ""])
def test_anything_else_is_not_a_rate(text: str) -> None:
    with pytest.raises(ValueError, match="N/s"):
        KeyRate.parse(text)


def test_a_key_made_with_senders_sends_from_those_only() -> None:
    senders = frozenset({"+14155550100", "+447911123456"})
    assert check_sender(senders, "+14155550100") is None
    assert check_sender(senders, "+14155550101") == SenderNotAllowed("+14155550101")


def test_a_key_made_without_senders_sends_from_any() -> None:
    assert check_sender(frozenset(), "+14155550101") is None


def test_the_tighter_quota_is_the_one_with_fewer_left_then_the_later_reset() -> None:
    sender, key = Quota(5, 4, 60), Quota(2, 1, 1)
    assert tighter(sender, key) == key
    assert tighter(Quota(5, 1, 60), key) == Quota(5, 1, 60)
