"""Domain errors of the hub. The HTTP layer maps them to status codes, the RPC layer to error codes."""

from __future__ import annotations


class HubError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        details: list[dict[str, str]] | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class NotFound(HubError):
    status = 404
    code = "not_found"


class Conflict(HubError):
    status = 409
    code = "conflict"


class Invalid(HubError):
    status = 422
    code = "invalid"


class TooLarge(HubError):
    status = 413
    code = "too_large"


class Unavailable(HubError):
    status = 503
    code = "unavailable"
