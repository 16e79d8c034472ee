import pytest

from domain.errors import InvalidField
from domain.phone import PhoneNumber


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+14155550100", "US"),
        ("+447911123456", "GG"),
        ("+4915112345678", "DE"),
        ("+33612345678", "FR"),
    ],
)
def test_valid_numbers_parse_to_their_e164_form_and_region(raw: str, region: str) -> None:
    number = PhoneNumber.parse(raw, "from")
    assert number.e164 == raw
    assert number.region == region


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("+1234567890", "is not a valid number for country code 1: too short"),
        ("+1202555012345", "is not a valid number for country code 1: too long"),
        ("+15555555555", "is not a valid number for country code 1"),
        ("+99912345678", "has an unknown country code"),
        ("+115002000000", "is not in E.164 form; that is +15002000000"),
    ],
)
def test_numbers_libphonenumber_refuses_say_why(raw: str, why: str) -> None:
    with pytest.raises(InvalidField) as caught:
        PhoneNumber.parse(raw, "to")
    assert caught.value.field == "to"
    assert why in caught.value.message


@pytest.mark.parametrize(
    "raw",
    [
        "14155550100",
        "+1 415 555 0100",
        "+1-415-555-0100",
        "+0123456789",
        "+",
        "",
        "+1234567890123456",
        " +14155550100",
        "+14155550100\n",
        "tel:+14155550100",
        "+١٤١٥٥٥٥٠١٠٠",
    ],
)
def test_anything_not_strict_e164_is_refused_before_libphonenumber_sees_it(raw: str) -> None:
    with pytest.raises(InvalidField, match=r"E\.164"):
        PhoneNumber.parse(raw, "from")
