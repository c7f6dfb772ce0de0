"""Domain errors of the hub: a kind (what went wrong), a machine-readable code, a message and details (JSON
pointers into the request). No transport here: each edge maps kinds with its own table (HTTP statuses in
`api.errors`, RPC codes in `rpc_handlers`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import ClassVar

from pydantic import ValidationError

Details = list[dict[str, str]]


class ErrorKind(StrEnum):
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    UNSUPPORTED_MEDIA = "unsupported_media_type"
    NOT_ACCEPTABLE = "not_acceptable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_FAILED = "upstream_failed"


class HubError(Exception):
    """A domain error. Subclasses name their kind (and a default code: the kind's value unless given):
    `class NotFound(HubError, kind=ErrorKind.NOT_FOUND)`."""

    kind: ClassVar[ErrorKind] = ErrorKind.BAD_REQUEST
    code = "bad_request"

    def __init_subclass__(cls, kind: ErrorKind | None = None, code: str | None = None) -> None:
        super().__init_subclass__()
        if kind is not None:
            cls.kind, cls.code = kind, code or kind.value

    def __init__(self, message: str, details: Details | None = None, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        if code is not None:
            self.code = code


class NotFound(HubError, kind=ErrorKind.NOT_FOUND): ...


class Conflict(HubError, kind=ErrorKind.CONFLICT): ...


class Invalid(HubError, kind=ErrorKind.INVALID): ...


class TooLarge(HubError, kind=ErrorKind.TOO_LARGE): ...


class Unavailable(HubError, kind=ErrorKind.UNAVAILABLE): ...


class UnsupportedMedia(HubError, kind=ErrorKind.UNSUPPORTED_MEDIA): ...


class NotAcceptable(HubError, kind=ErrorKind.NOT_ACCEPTABLE): ...


class UpstreamTimeout(HubError, kind=ErrorKind.UPSTREAM_TIMEOUT, code="timeout"):
    """A service the hub asked on the caller's behalf (an ingest instance) did not answer in time."""


class UpstreamFailed(HubError, kind=ErrorKind.UPSTREAM_FAILED):
    """A service the hub asked on the caller's behalf answered with an error (its code is kept)."""


Loc = Sequence[int | str]


def pointer(loc: Loc, prefix: str = "") -> str:
    """A JSON pointer (under `prefix`) for a pydantic error location; the root is `/`."""
    return prefix + "".join(f"/{p}" for p in loc) or "/"


def validation_details(exc: ValidationError, locate: Callable[[Loc], str] = pointer) -> Details:
    """Every problem of a pydantic validation error as `{loc, msg}`, `loc` made by `locate`."""
    return [{"loc": locate(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]


def dotted(exc: ValidationError, limit: int | None = None) -> list[str]:
    """`field.path: message` per problem, without the input (it may be large or secret): for logs and reasons."""
    return [f"{'.'.join(str(p) for p in e['loc']) or '/'}: {e['msg']}" for e in exc.errors()[:limit]]
