"""The one shape every decision has: a decider.

A decider is three pure things: the state before any event (`initial`),
`evolve(state, event) -> state`, and `decide(command, state, now) -> events |
rejection`. The time comes in as data; nothing here reads a clock, a database
or a file. A command handler (commands/handler.py) supplies the state, folded
from the stream it reads under a lock, and appends what `decide` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import msgspec

C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E")


class Rejection(msgspec.Struct, frozen=True):
    """The command changes nothing, for the reason its class names."""


@dataclass(frozen=True)
class Decider(Generic[C, S, E]):
    initial: S
    decide: Callable[[C, S, datetime], Sequence[E] | Rejection]
    evolve: Callable[[S, E], S]

    def fold(self, events: Iterable[E]) -> S:
        state = self.initial
        for event in events:
            state = self.evolve(state, event)
        return state
