"""String formats of the OpenAPI document that only this service can generate.

The document states each value's shape; some are also checked against
something no pattern can state: a phone number must be one libphonenumber
holds valid, and a consistency token must name a place in this service's log.
Registered with schemathesis (`schemathesis.toml` loads this file), its
generator draws values that are valid in that sense too, so a request it calls
valid is one the service must accept.
"""

from __future__ import annotations

import phonenumbers
import schemathesis
from hypothesis import strategies as st

# Every region's example numbers, of the types that can receive an SMS or a call.
_KINDS = (
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
)
VALID_NUMBERS = sorted(
    {
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        for region in phonenumbers.SUPPORTED_REGIONS
        for kind in _KINDS
        if (number := phonenumbers.example_number_for_type(region, kind)) is not None
        and phonenumbers.is_valid_number(number)
    }
)

# A place before any transaction a client of this database can have written in
# (the first transaction ids go to creating and migrating the database): a read
# that carries it includes everything already, so it answers at once.
_BEFORE_ANY_WRITE = st.builds("{}.{}".format, st.integers(0, 2), st.integers(0, 2**31))

schemathesis.openapi.format("e164", st.sampled_from(VALID_NUMBERS))
schemathesis.openapi.format("consistency-token", _BEFORE_ANY_WRITE)
