import pytest
from uuid_utils.compat import uuid7

from domain.commands import ReceiveSms
from domain.errors import InvalidCommand

GOOD_FROM, GOOD_TO = "+14155550100", "+447911123456"


def _errors(sender: str, recipient: str, text: str) -> dict[str, str]:
    with pytest.raises(InvalidCommand) as caught:
        ReceiveSms.create(uuid7(), sender, recipient, text)
    return {e.field: e.message for e in caught.value.errors}


def test_a_good_command_keeps_its_numbers_in_e164() -> None:
    command = ReceiveSms.create(uuid7(), GOOD_FROM, GOOD_TO, "Hello")
    assert (command.from_.e164, command.to.e164, command.message) == (
        GOOD_FROM,
        GOOD_TO,
        "Hello",
    )


@pytest.mark.parametrize("text", ["x", "x" * 160, "é" * 160, "👍" * 160, "日本語"])
def test_text_of_one_to_160_code_points_is_accepted(text: str) -> None:
    assert ReceiveSms.create(uuid7(), GOOD_FROM, GOOD_TO, text).message == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "must not be empty"),
        ("x" * 161, "161 characters long"),
        ("👍" * 161, "161 characters long"),
        ("a\x00b", "NUL"),
        ("\ud800", "lone surrogates"),
    ],
)
def test_bad_text_is_refused_with_the_reason(text: str, why: str) -> None:
    assert why in _errors(GOOD_FROM, GOOD_TO, text)["message"]


def test_every_bad_field_is_reported_at_once() -> None:
    errors = _errors("+1234567890", "0044", "")
    assert set(errors) == {"from", "to", "message"}
