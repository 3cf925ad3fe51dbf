"""Clients of the ryu_lag REST API: :class:`LagClient` and the ``lagctl`` command."""

from clients.client import (
    ApiError,
    Conflict,
    ConnectionFailed,
    LagClient,
    LagError,
    NotFound,
    ServerError,
    Unauthorized,
    ValidationError,
)

__all__ = [
    "ApiError",
    "Conflict",
    "ConnectionFailed",
    "LagClient",
    "LagError",
    "NotFound",
    "ServerError",
    "Unauthorized",
    "ValidationError",
]
