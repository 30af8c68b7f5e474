"""The small hierarchy of business refusals raised by aggregates and services."""

from __future__ import annotations


class DomainError(Exception):
    """A business refusal: reported to the caller as a user error, never as a crash."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, field: tuple[str, ...] | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if isinstance(field, str):
            field = tuple(field.split("."))
        self.field: tuple[str, ...] | None = field


class InvalidInput(DomainError):
    """Input that breaks a rule of the domain (names the field and the reason)."""

    code = "BAD_USER_INPUT"


class InvalidTransition(DomainError):
    """A state change the state machine does not allow."""

    code = "INVALID_TRANSITION"


class Conflict(DomainError):
    """A concurrent change won, or an idempotency key was reused with another input."""

    code = "CONFLICT"


class SelfApproval(DomainError):
    """Nobody approves their own work."""

    code = "SELF_APPROVAL"


class NotFound(DomainError):
    """The object does not exist (or is not visible to the caller)."""

    code = "NOT_FOUND"
