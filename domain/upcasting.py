"""Reading the older versions of events that the log holds as the current one.

The log keeps every event as it was written, with the `schema_version` it was
written in, and never rewrites it. Code only ever meets the current version
(the struct in `domain.events`): each older version has one pure step to the
next, registered under `(type, version)`, and decoding applies the steps in
turn. The SQL folds read the log through the database's own version of these
steps (the `upcast_event` function); a test holds the two to agreeing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from domain.access import ApiKeyCreated
from domain.events import LOGGED_TYPES, AnyEvent, MediaAttached

Data = dict[str, Any]
"""An event's `data` as JSON decodes it: what a step reads and returns."""

Step = Callable[[Data], Data]


class UnknownEventVersion(Exception):
    """An event this code cannot read as a current one: a type it does not know,
    a version newer than its own, or an older one with no step to the next.

    Raised rather than guessed at: a fold that skipped or misread such an event
    would build a wrong model without a word.
    """

    def __init__(self, type_: str, schema_version: int) -> None:
        known = LOGGED_TYPES.get(type_)
        why = (
            "an unknown event type"
            if known is None
            else f"this code reads versions 1 to {known.SCHEMA_VERSION} of it"
        )
        super().__init__(f"cannot read {type_} version {schema_version}: {why}")
        self.type = type_
        self.schema_version = schema_version


STEPS: dict[tuple[str, int], Step] = {}
"""`(type, version)` to the step that turns that version's data into the next's."""


def step(type_: str, version: int) -> Callable[[Step], Step]:
    def register(function: Step) -> Step:
        if (type_, version) in STEPS:
            raise ValueError(f"{type_} version {version} has a step already")
        STEPS[(type_, version)] = function
        return function

    return register


FORMAT_OF = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF", "image/webp": "WEBP"}
"""Pillow's format name for each content type an image was ever stored with."""


@step(MediaAttached.TYPE, 1)
def media_attached_format(data: Data) -> Data:
    """Version 1 recorded only the content type, which names one format each.

    A JPEG holding several pictures (Pillow's MPO) was recorded as image/jpeg,
    so it reads as JPEG: the log cannot tell it apart any more.
    """
    content_type = data["content_type"]
    if content_type not in FORMAT_OF:
        raise ValueError(f"{MediaAttached.TYPE} version 1 with content type {content_type!r}")
    return {**data, "format": FORMAT_OF[content_type]}


@step(ApiKeyCreated.TYPE, 1)
def api_key_created_limits(data: Data) -> Data:
    """Version 1 keys had no limits of their own: no rate, any sender."""
    return {**data, "rate_per_second": None, "senders": []}


def _current(type_: str, schema_version: int) -> type[AnyEvent]:
    try:
        return LOGGED_TYPES[type_]
    except KeyError:
        raise UnknownEventVersion(type_, schema_version) from None


def upcast(type_: str, schema_version: int, data: Data) -> Data:
    """`data`, stored as `schema_version` of `type_`, in the current version's keys."""
    latest = _current(type_, schema_version).SCHEMA_VERSION
    if not 1 <= schema_version <= latest:
        raise UnknownEventVersion(type_, schema_version)
    for version in range(schema_version, latest):
        forward = STEPS.get((type_, version))
        if forward is None:
            raise UnknownEventVersion(type_, schema_version)
        data = forward(data)
    return data


def decode(type_: str, schema_version: int, data: bytes) -> AnyEvent:
    """The event stored as `data`, as the current version's struct."""
    cls = _current(type_, schema_version)
    if schema_version == cls.SCHEMA_VERSION:
        return msgspec.json.decode(data, type=cls)
    old = msgspec.json.decode(data, type=Data)
    return msgspec.convert(upcast(type_, schema_version, old), cls)
