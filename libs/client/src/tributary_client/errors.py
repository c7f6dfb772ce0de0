"""Errors from the platform, carrying its error body: code, message and the details naming what is wrong."""

from __future__ import annotations

from typing import Any

import httpx


class TributaryError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        where = "; ".join(f"{d.get('loc', '')}: {d.get('msg', '')}" for d in self.details)
        super().__init__(f"{status} {code}: {message}" + (f" ({where})" if where else ""))

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
