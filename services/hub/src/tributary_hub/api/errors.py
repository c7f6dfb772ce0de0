"""The HTTP edge of the domain errors: one table from error kind to status, and the handlers answering every
hub error (and a database away) in the common error shape."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError

from tributary_common.http_errors import error_response

from ..errors import ErrorKind, HubError

HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.NOT_ACCEPTABLE: 406,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNSUPPORTED_MEDIA: 415,
    ErrorKind.INVALID: 422,
    ErrorKind.UPSTREAM_FAILED: 502,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.UPSTREAM_TIMEOUT: 504,
}


# What an answer quotes of a message at most: messages name what was sent (a topic name from the path, unknown item
# names), which a client may make as long as a request head allows.
MAX_MESSAGE_CHARS = 1000


def cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "…"


def install_hub_errors(app: FastAPI) -> None:
    @app.exception_handler(HubError)
    async def _hub_error(_: Request, exc: HubError) -> JSONResponse:
        details = [{**d, "msg": cut(d["msg"])} if "msg" in d else d for d in exc.details]
        return error_response(HTTP_STATUS[exc.kind], exc.code, cut(exc.message), details)

    @app.exception_handler(PyMongoError)
    async def _database(_: Request, exc: PyMongoError) -> JSONResponse:
        # The database being away is not the client's fault, nor an internal error: say so, and when to retry.
        return error_response(
            503,
            "database_unavailable",
            f"the database did not answer: {type(exc).__name__}; retry later",
            headers={"Retry-After": "5"},
        )
