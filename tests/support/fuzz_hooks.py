"""What schemathesis needs to know of smsq beyond the OpenAPI document.

`schemathesis.toml` loads this file, so `schemathesis run` from the checkout
(and the suite's run, tests/e2e/test_fuzz.py) use it. The document states each
value's shape; a few values are also checked against what no schema can state:

- a phone number must be one libphonenumber holds valid: the format `e164`
  draws such numbers;
- a consistency token must name a place in this service's log: the format
  `consistency-token` draws places before any write a client can make, which a
  read includes at once;
- an Idempotency-Key names one request: reused with another body it is a 422,
  as the contract says. A generator that draws one key for many bodies is not
  sending "a valid request", so each call gets a key of its own.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import phonenumbers
import schemathesis
from hypothesis import strategies as st
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario

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

# The first transaction ids go to creating and migrating the database, so no
# client write is at or before these places.
_BEFORE_ANY_WRITE = st.builds("{}.{}".format, st.integers(0, 2), st.integers(0, 2**31))

schemathesis.openapi.format("e164", st.sampled_from(VALID_NUMBERS))
schemathesis.openapi.format("consistency-token", _BEFORE_ANY_WRITE)

_KEY = "Idempotency-Key"
# The document's pattern for the key; a key that breaks it is left as drawn.
_VALID_KEY = re.compile(r"[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?")


@schemathesis.hook
def before_call(context: Any, case: schemathesis.Case, kwargs: dict[str, Any]) -> None:
    data = case.meta.phase.data if case.meta is not None else None
    if isinstance(data, CoveragePhaseData) and data.scenario == CoverageScenario.MISSING_PARAMETER:
        # Sent as drawn: a case that leaves out a header on purpose (the
        # credential, say) must not be told apart from the drawn one.
        return
    key = (case.headers or {}).get(_KEY)
    if isinstance(key, str) and _VALID_KEY.fullmatch(key):
        case.headers[_KEY] = f"{key[:200]}-{uuid.uuid4().hex}"
