"""What an expected failure prints (one line naming the cause and what to do, then any violations) and the exit
code it ends with (`errors.ExitCode`); the traceback only with `--debug`."""

from __future__ import annotations

import contextlib
import re
import sys
import traceback

import httpx
import typer

from ..errors import ExitCode, TributaryError
from .context import Ctx

EXIT_CODES = (
    "Exit codes: 0 ok; 1 unexpected error; 2 usage or bad local input; 3 hub or stream unreachable; "
    "4 not authenticated (401: no, invalid or expired token); 5 forbidden (403: missing scope or outside the ACL); "
    "6 not found (404); 7 request refused as invalid (400, 413, 415, 422); 8 conflict (409); "
    "9 platform unavailable (503, 5xx: retry); 130 interrupted. --debug shows the traceback of a failure."
)
MAX_DETAILS = 50
MISSING_SCOPE = re.compile(r"missing scope '([^']+)'")


def explain(exc: TributaryError, c: Ctx | None) -> list[str]:
    """What went wrong and what to do, first line alone; then the violations, one per line with its pointer."""
    where = f" ({exc.status} {exc.code})"
    if exc.status == 401:
        if "expired" in exc.message:
            head = f"the credentials have expired: {exc.message}; get a new token and set TRIBUTARY_TOKEN or --token"
        elif c is not None and not c.token:
            head = "not authenticated: no token given; set TRIBUTARY_TOKEN or --token"
        else:
            head = f"not authenticated: {exc.message}; check TRIBUTARY_TOKEN or --token"
    elif exc.status == 403:
        scope = MISSING_SCOPE.search(exc.message)
        head = (
            f"forbidden: the token lacks the scope {scope.group(1)!r} (or admin)"
            if scope
            else f"forbidden: {exc.message}"
        )
    else:
        head = exc.message
    lines = [f"error: {head}{where}"]
    lines += [f"  {d.get('loc', '')}: {d.get('msg', '')}" for d in exc.details[:MAX_DETAILS]]
    if len(exc.details) > MAX_DETAILS:
        lines.append(f"  ... and {len(exc.details) - MAX_DETAILS} more")
    return lines


def unreachable(exc: BaseException, c: Ctx | None) -> str:
    url: object = c.hub if c else "the platform"
    if isinstance(exc, httpx.RequestError):
        with contextlib.suppress(RuntimeError):  # RuntimeError: no request attached
            url = exc.request.url
    elif c is not None:
        url = c.stream  # the stream client's websocket
    what = "no answer in time from" if isinstance(exc, httpx.TimeoutException | TimeoutError) else "cannot reach"
    return (
        f"error: {what} {url} ({type(exc).__name__}); is the platform running? `make up` starts a local one "
        "(or set --hub / TRIBUTARY_HUB_URL, --stream / TRIBUTARY_STREAM_URL)"
    )


def fail(lines: list[str], code: ExitCode, exc: BaseException, c: Ctx | None) -> typer.Exit:
    if c is not None and c.debug:
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write("\n".join(lines) + "\n")  # plain text: messages may hold brackets rich would eat
    return typer.Exit(int(code))
