"""Running a command's coroutine: an expected failure becomes its explanation on stderr and its exit code."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import typer
from websockets.exceptions import WebSocketException

from ..errors import ExitCode, TributaryError
from ..hub import HubClient
from .context import Ctx, current
from .failures import explain, fail, unreachable

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    """Run a command's coroutine (one per process)."""
    c = current[0]
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except TributaryError as exc:
        raise fail(explain(exc, c), exc.exit_code, exc, c) from exc
    except (httpx.TransportError, ConnectionError, TimeoutError, socket.gaierror, WebSocketException) as exc:
        raise fail([unreachable(exc, c)], ExitCode.UNREACHABLE, exc, c) from exc
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def call_hub(c: Ctx, op: Callable[[HubClient], Awaitable[T]]) -> T:
    """`op` on a hub client opened for this invocation, failures explained (`run`)."""

    async def go() -> T:
        async with c.client() as hub:
            return await op(hub)

    return run(go())
