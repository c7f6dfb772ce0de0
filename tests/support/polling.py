"""Waiting for a condition in tests: `wait_for` blocks (sync tests, threads), `eventually` awaits (async tests).

Both take the same arguments in the same order, so one can stand in for the other."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


def _timed_out(timeout: float, what: str) -> AssertionError:
    return AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for(
    predicate: Callable[..., Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """Call `predicate` until it returns something truthy and return that; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        time.sleep(interval)


async def eventually(
    predicate: Callable[..., Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.1
) -> Any:
    """`wait_for` for async tests: `predicate` may be a plain or an async function (its result is awaited)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        await asyncio.sleep(interval)
