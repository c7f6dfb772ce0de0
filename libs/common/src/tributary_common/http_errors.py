"""One error shape for every HTTP API: `{"error": {"code", "message", "details": [{"loc", "msg"}]}}`.

Validation problems become 4xx that say what is wrong and where; an unexpected exception becomes a 500
without internals, and is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .auth import AuthError, AuthUnavailable, Forbidden

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    loc: str
    msg: str


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorBody(BaseModel):
    error: ErrorInfo


class ApiError(Exception):
    """Raise from a route to answer `status` with a machine-readable `code` and the details."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status, headers=headers)


def _loc(parts: tuple[Any, ...] | list[Any]) -> str:
    return "/" + "/".join(str(p) for p in parts)


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at this path. Starlette's own 405 names only the first route
    matching the path, and FastAPI makes one route per method: a client would be told `GET` where `GET, POST`
    work. Asks each route (included routers too) whether it fully matches the same request with another method,
    on a copy of the scope without FastAPI's per-request state."""
    probe = {k: v for k, v in request.scope.items() if k != "fastapi"}
    routes = request.app.router.routes
    return [m for m in METHODS if any(r.matches({**probe, "method": m})[0] == Match.FULL for r in routes)]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        return error_response(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(AuthUnavailable)
    async def _auth_unavailable(_: Request, exc: AuthUnavailable) -> JSONResponse:
        # Not the caller's fault: the token may be fine, the keys to check it are out of reach. Retry later.
        return error_response(503, "auth_unavailable", str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return error_response(403, "forbidden", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        # Name the first problem in the message too: a client that prints only the message still learns what.
        first = f": {details[0]['loc']}: {details[0]['msg']}" if details else ""
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        return error_response(422, "invalid_request", f"the request does not match the API{first}{more}", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "http_error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal error; see the service log")
