"""Clients of the ryu_lag REST API: :class:`LagClient` and the ``lagctl`` command."""

from clients.apply import Change, InvalidDesiredState
from clients.client import (
    ApiError,
    ApplyError,
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
    "ApplyError",
    "Change",
    "Conflict",
    "ConnectionFailed",
    "InvalidDesiredState",
    "LagClient",
    "LagError",
    "NotFound",
    "ServerError",
    "Unauthorized",
    "ValidationError",
]
