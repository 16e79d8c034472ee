"""Phone numbers: E.164 in shape and valid according to libphonenumber."""

from __future__ import annotations

import re
from functools import lru_cache

import msgspec
import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

from domain.errors import InvalidField

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")

_WHY_IMPOSSIBLE = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "no number of that country code has this length",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "only dialable locally",
}


class PhoneNumber(msgspec.Struct, frozen=True):
    """A phone number in E.164 form that libphonenumber holds valid."""

    e164: str
    region: str | None

    @staticmethod
    def parse(raw: str, field: str = "phone") -> PhoneNumber:
        return _parse(raw, field)


@lru_cache(maxsize=65536)
def _parse(raw: str, field: str) -> PhoneNumber:
    # Checking the shape first keeps libphonenumber's leniency (spaces, dashes,
    # letters, national prefixes) out: the contract is strict E.164.
    if not _E164.fullmatch(raw):
        raise InvalidField(
            field,
            f"{raw[:32]!r} is not in E.164 form: '+', a country code and the number, "
            "digits only, at most 15 digits",
        )
    try:
        number = phonenumbers.parse(raw, None)
    except NumberParseException:
        raise InvalidField(field, f"{raw} has an unknown country code") from None
    # What is_valid_number does, keeping the region it finds: looking it up
    # again costs a second pass over the region's number patterns.
    region = phonenumbers.region_code_for_number(number)
    if region is None or not phonenumbers.is_valid_number_for_region(number, region):
        why = _WHY_IMPOSSIBLE.get(
            phonenumbers.is_possible_number_with_reason(number),
            "not an assigned number range",
        )
        raise InvalidField(
            field, f"{raw} is not a valid number for country code {number.country_code}: {why}"
        )
    canonical = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if canonical != raw:
        # libphonenumber reads past a national prefix after the country code
        # ("+1 1 500…"); the number is valid, but this is not its E.164 form.
        raise InvalidField(field, f"{raw} is not in E.164 form; that is {canonical}")
    return PhoneNumber(e164=raw, region=region)
