"""How carriers count an SMS: GSM-7 when every character is in GSM 03.38, else UCS-2.

A single GSM-7 message holds 160 septets, each part of a longer one 153 (the
user data header takes the rest); characters of the extension table cost two
septets and never straddle two parts. UCS-2 holds 70 UTF-16 code units, 67
per part; a character outside the Basic Multilingual Plane is a surrogate pair
and is never split either.
"""

from __future__ import annotations

from typing import Literal

import msgspec

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

Encoding = Literal["GSM-7", "UCS-2"]


class Segmentation(msgspec.Struct, frozen=True):
    encoding: Encoding
    segments: int
    units: int
    """Septets (GSM-7) or UTF-16 code units (UCS-2) the text occupies."""


def segment(text: str) -> Segmentation:
    encoding: Encoding
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        encoding, single, part = "GSM-7", 160, 153
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
    else:
        encoding, single, part = "UCS-2", 70, 67
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    units = sum(costs)
    if units <= single:
        return Segmentation(encoding, 1, units)
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return Segmentation(encoding, segments, units)
