"""Decider tests in one shape: given these events, when this command, then these
events (or this rejection). No database, no clock: milliseconds each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

from domain.decider import Decider, Rejection

C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E")
R = TypeVar("R", bound=Rejection)


class Given(Generic[C, S, E]):
    def __init__(self, decider: Decider[C, S, E], events: Sequence[E]) -> None:
        self.decider = decider
        self.events = tuple(events)

    @property
    def state(self) -> S:
        return self.decider.fold(self.events)

    def when(self, command: C, at: datetime) -> When[C, S, E]:
        return When(self, self.decider.decide(command, self.state, at))


class When(Generic[C, S, E]):
    def __init__(self, given: Given[C, S, E], decision: Sequence[E] | Rejection) -> None:
        self.given = given
        self.decision = decision

    @property
    def events(self) -> tuple[E, ...]:
        assert not isinstance(self.decision, Rejection), f"rejected: {self.decision}"
        return tuple(self.decision)

    def then(self, *events: E) -> When[C, S, E]:
        assert self.events == events
        return self

    def then_rejected(self, kind: type[R]) -> R:
        assert isinstance(self.decision, kind), f"not a {kind.__name__}: {self.decision}"
        return self.decision

    @property
    def state(self) -> S:
        """The state once the decided events are in the stream."""
        return self.given.decider.fold((*self.given.events, *self.events))


def given(decider: Decider[C, S, E], *events: Any) -> Given[C, S, E]:
    return Given(decider, events)
