"""Errors from the platform, carrying its error body: code, message and the details naming what is wrong; and
the exit codes of the `tributary` CLI, one per kind of expected failure (documented in its --help and README)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import httpx


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # anything else: an unexpected answer, or a bug (its traceback is shown)
    USAGE = 2  # bad options or local input (also typer's own usage errors)
    UNREACHABLE = 3  # the hub or stream did not answer: not running, wrong URL, network, timeout
    UNAUTHENTICATED = 4  # 401: no token, a token that does not verify, or an expired one
    FORBIDDEN = 5  # 403: a scope is missing or the ACL does not cover the name
    NOT_FOUND = 6  # 404
    INVALID = 7  # 400, 413, 415, 422: the request was refused as it is
    CONFLICT = 8  # 409
    UNAVAILABLE = 9  # 503 and other 5xx: the platform cannot serve it now; retry
    INTERRUPTED = 130  # Ctrl-C


def exit_code_for(status: int) -> ExitCode:
    """The CLI's exit code for an HTTP status the platform answered."""
    fixed = {
        401: ExitCode.UNAUTHENTICATED,
        403: ExitCode.FORBIDDEN,
        404: ExitCode.NOT_FOUND,
        409: ExitCode.CONFLICT,
    }
    if status in fixed:
        return fixed[status]
    if status in (400, 413, 415, 422):
        return ExitCode.INVALID
    return ExitCode.UNAVAILABLE if status >= 500 else ExitCode.ERROR


class TributaryError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        where = "; ".join(f"{d.get('loc', '')}: {d.get('msg', '')}" for d in self.details)
        super().__init__(f"{status} {code}: {message}" + (f" ({where})" if where else ""))

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self.status)

    @classmethod
    def from_response(cls, response: httpx.Response) -> TributaryError:
        try:
            err = response.json().get("error", {})
        except ValueError:
            err = {}
        if not isinstance(err, dict):
            err = {}
        return cls(
            response.status_code,
            str(err.get("code", "http_error")),
            str(err.get("message", response.text[:200] or response.reason_phrase)),
            list(err.get("details", [])),
        )
