"""Consistency tokens: a write names its place in the log; a read waits for it.

A token is the place, in the log's reading order, of what a write recorded
(or found). A read that carries one answers only once the read model it reads
has folded past that place, so a client sees its own writes in a list without
polling. Reads of one message answer from its stream whenever the model is
behind, so they include every acknowledged write already and never wait.
"""

from __future__ import annotations

import re
from typing import Annotated

from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter

from api.http.problems import Refusal
from api.http.services import Services
from commands.event_store import Place
from projections.progress import UnknownPlace

HEADER = "Consistency-Token"
_TOKEN = re.compile(r"^([0-9]{1,19})\.([0-9]{1,19})$")
_BIGGEST = 2**63 - 1

ConsistencyToken = Annotated[
    str | None,
    HeaderParameter(
        name=HEADER,
        required=False,
        pattern=_TOKEN.pattern,
        description="A token a write answered: the answer then includes that write"
        " (waiting at most SMSQ_CONSISTENCY_WAIT seconds, else 503).",
        # Left out, it is absent: the word `null` would be a (malformed) token. The
        # format names what no pattern can state: a place in this service's log.
        schema_extra={
            "one_of": None,
            "type": "string",
            "pattern": r"^[0-9]{1,19}\.[0-9]{1,19}$",
            "format": "consistency-token",
        },
    ),
]

# What a read that waits for a token can answer besides its own errors.
CONSISTENCY = {
    503: "The database is unavailable, or the read models did not reach the"
    " Consistency-Token in time; `Retry-After` says when to try again",
}

WRITTEN = [
    ResponseHeader(
        name=HEADER,
        description="The place in the log of what this write recorded or found: send it"
        " with a later read to have that read include this write.",
        documentation_only=True,
        required=True,
    )
]


def token_of(place: Place) -> str:
    return f"{place.tx_id}.{place.position}"


def place_of(token: str) -> Place:
    found = _TOKEN.match(token)
    if found is None or max(int(found[1]), int(found[2])) > _BIGGEST:
        raise _unknown()
    return Place(int(found[1]), int(found[2]))


def _unknown() -> Refusal:
    return Refusal(422, f"the {HEADER} is not one this service gave", slug="validation")


async def await_model(services: Services, token: str | None, model: str) -> None:
    """Return once read model `model` has folded past `token` (no token: at once)."""
    if token is None:
        return
    place = place_of(token)
    within = services.settings.consistency_wait
    try:
        passed = await services.progress.wait(model, place, within)
    except UnknownPlace:
        raise _unknown() from None
    if not passed:
        _not_yet(services, within)


async def await_log(services: Services, token: str | None) -> None:
    """Return once every transaction up to `token`'s has ended, so that a reader of
    the log in its reading order reaches it."""
    if token is None:
        return
    place = place_of(token)
    within = services.settings.consistency_wait
    try:
        passed = await services.progress.wait_for_horizon(place, within)
    except UnknownPlace:
        raise _unknown() from None
    if not passed:
        _not_yet(services, within)


def _not_yet(services: Services, within: float) -> None:
    services.metrics.consistency_timeouts.inc()
    raise Refusal(
        503,
        f"the read models did not reach the {HEADER} within {within:g} s; try again shortly",
        slug="not-consistent-yet",
        headers={"Retry-After": "1"},
    )
