"""Properties of the domain over generated inputs, not hand-picked examples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st
from uuid_utils.compat import uuid7

from domain.commands import ReceiveSms
from domain.decider import Rejection
from domain.encoding import segment
from domain.errors import InvalidCommand, InvalidField
from domain.events import SmsReceived
from domain.phone import PhoneNumber
from domain.sender import RATE_LIMIT, RATE_WINDOW, sender_decider

T0 = datetime(2026, 11, 24, tzinfo=UTC)
SENDER, RECIPIENT = "+14155550100", "+447911123456"

# Every region's example number: random digits are almost never a valid
# number, so without these the property's valid branch would go untried.
_EXAMPLES = sorted(
    phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
    for region in phonenumbers.SUPPORTED_REGIONS
    if (n := phonenumbers.example_number(region)) is not None
)
near_valid = st.builds(
    lambda example, keep, tail: example[: len(example) - keep] + tail,
    st.sampled_from(_EXAMPLES),
    st.integers(0, 4),
    st.text("0123456789", max_size=4),
)
phone_like = st.one_of(
    st.text(),
    st.from_regex(r"\+[0-9]{1,16}", fullmatch=True),
    st.from_regex(r"\+[1-9][0-9 \-().]{4,20}", fullmatch=True),
    near_valid,
)


@given(phone_like)
def test_any_string_is_a_valid_e164_number_or_a_field_error(raw: str) -> None:
    refusal: InvalidField | None = None
    try:
        number = PhoneNumber.parse(raw, "from")
    except InvalidField as error:
        refusal = error
    if refusal is not None:
        assert (refusal.field, bool(refusal.message)) == ("from", True)
        return
    assert number.e164 == raw
    parsed = phonenumbers.parse(raw, None)
    assert phonenumbers.is_valid_number(parsed)
    assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == raw


@given(st.text(max_size=200))
def test_any_text_is_accepted_exactly_when_the_rules_allow_it(text: str) -> None:
    allowed = 1 <= len(text) <= 160 and "\x00" not in text
    refused: list[str] = []
    try:
        ReceiveSms.create(uuid7(), SENDER, RECIPIENT, text)
    except InvalidCommand as error:
        refused = [e.message for e in error.errors]
    if allowed:
        # The one rule length and NUL do not cover: text must encode to UTF-8.
        assert all(m.startswith("must be valid Unicode") for m in refused)
    else:
        assert refused


# Gaps in seconds: bursts, a steady trickle, and the exact spacings that put
# a message on a window's edge (5 x 12 s = 60 s; 2 s for duplicates).
gaps = st.one_of(
    st.floats(min_value=0, max_value=3, allow_nan=False),
    st.floats(min_value=0, max_value=40, allow_nan=False),
    st.sampled_from([2.0, 12.0, 15.0, 60.0]),
)
arrivals = st.lists(st.tuples(gaps, st.sampled_from("abc")), min_size=1, max_size=40)


def arrive(steps: list[tuple[float, str]]) -> list[SmsReceived]:
    """The messages accepted when these arrive, each `gap` seconds after the last."""
    window, now, accepted = sender_decider.initial, T0, []
    for gap, text in steps:
        now += timedelta(seconds=gap)
        decision = sender_decider.decide(
            ReceiveSms.create(uuid7(), SENDER, RECIPIENT, text), window, now
        )
        if not isinstance(decision, Rejection):
            for event in decision:
                window = sender_decider.evolve(window, event)
                accepted.append(event)
    return accepted


@settings(max_examples=300)
@given(arrivals)
def test_no_sixty_second_window_ever_holds_a_sixth_accepted_message(
    steps: list[tuple[float, str]],
) -> None:
    accepted = [event.received_at for event in arrive(steps)]
    for i, start in enumerate(accepted):
        within = [t for t in accepted[i:] if t - start < RATE_WINDOW]
        assert len(within) <= RATE_LIMIT


@settings(max_examples=300)
@given(arrivals)
def test_an_accepted_message_never_repeats_one_from_under_two_seconds_before(
    steps: list[tuple[float, str]],
) -> None:
    accepted = [(event.received_at, event.message) for event in arrive(steps)]
    for i, (t1, a) in enumerate(accepted):
        for t2, b in accepted[i + 1 :]:
            assert a != b or t2 - t1 >= timedelta(seconds=2)


@given(st.text(min_size=1, max_size=160))
def test_segments_fit_the_text_and_never_exceed_what_its_units_need(text: str) -> None:
    counted = segment(text)
    single, part = (160, 153) if counted.encoding == "GSM-7" else (70, 67)
    assert counted.segments >= 1
    if counted.units <= single:
        assert counted.segments == 1
    else:
        # Whole characters per part: at most one unit of slack per part.
        assert counted.units <= counted.segments * part
        assert counted.units > (counted.segments - 1) * (part - 1)
