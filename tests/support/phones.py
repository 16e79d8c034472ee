"""Random valid phone numbers: tests isolate by fresh ids, not by clean-ups."""

from __future__ import annotations

import random

import phonenumbers

_AREAS = ("202", "212", "305", "415", "512", "617", "718", "206")


def random_phone() -> str:
    while True:
        candidate = (
            f"+1{random.choice(_AREAS)}{random.randint(200, 999)}{random.randint(0, 9999):04d}"
        )
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate
