"""GraphQL errors with the contract's extension codes."""

from __future__ import annotations

from graphql import GraphQLError


class ApiError(Exception):
    """An error shown to the client as is, with `extensions.code`."""

    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = {"code": self.code}


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"


class Forbidden(ApiError):
    code = "FORBIDDEN"


class NotFoundError(ApiError):
    code = "NOT_FOUND"


class BadInput(ApiError):
    code = "BAD_USER_INPUT"


class RateLimited(ApiError):
    code = "RATE_LIMITED"


class TooComplex(ApiError):
    code = "QUERY_TOO_COMPLEX"


def is_public(error: GraphQLError) -> bool:
    """Errors whose message may reach the client: ours and GraphQL validation errors."""
    original = error.original_error
    return original is None or isinstance(original, (ApiError, GraphQLError))
