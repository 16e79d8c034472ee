"""Domain errors: a small hierarchy the API maps to problem details."""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the domain refused the input."""


class InvalidField(DomainError):
    """One field of a command is not acceptable; `field` names it as the client sent it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidCommand(DomainError):
    """Several fields may be wrong at once; all are reported together."""

    def __init__(self, errors: list[InvalidField]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors
