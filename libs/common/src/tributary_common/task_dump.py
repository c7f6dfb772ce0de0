"""SIGUSR1 logs where every asyncio task of the process waits: the await chain of each, coroutine by coroutine
down to the future it is suspended on. For a process that answers health checks but whose requests or workers
hang, this says which await they hang on, without a debugger or a restart."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine, Generator
from typing import Any

log = logging.getLogger(__name__)

MAX_DEPTH = 40  # awaits followed per task: enough for any chain of ours, bounded for a cyclic one
SHOWN_NAMES = 5  # task names listed per place


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """`file:line in function` for each coroutine the task is suspended in, outermost first, then what the
    innermost one awaits (a future, a sleep)."""
    lines: list[str] = []
    node: Any = task.get_coro()
    for _ in range(MAX_DEPTH):
        if isinstance(node, Coroutine | Generator):
            frame = getattr(node, "cr_frame", None) or getattr(node, "gi_frame", None)
            if frame is None:  # a future's iterator, or a coroutine finished or not started yet
                running = hasattr(node, "cr_frame") or hasattr(node, "gi_frame")
                lines.append(f"{getattr(node, '__qualname__', '')} (not running)" if running else "awaits a future")
                break
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_qualname}")
            node = getattr(node, "cr_await", None) or getattr(node, "gi_yieldfrom", None)
            if node is None:
                break
        else:
            lines.append(f"awaits {node!r}"[:300])
            break
    return lines


def dump_tasks() -> str:
    """Every task's await chain; tasks waiting at the same place (a stream's thousands of connections) are one
    entry with their count and a few of their names."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for task in asyncio.all_tasks():
        groups.setdefault(tuple(await_chain(task)), []).append(task.get_name())
    parts = [f"{sum(map(len, groups.values()))} asyncio tasks waiting at {len(groups)} places"]
    for chain, names in sorted(groups.items(), key=lambda g: (-len(g[1]), g[0])):
        names.sort()
        more = f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else ""
        parts.append(f"{len(names)} task(s) {', '.join(names[:SHOWN_NAMES])}{more}:")
        parts += [f"  {line}" for line in chain]
    return "\n".join(parts)


def install(loop: asyncio.AbstractEventLoop) -> None:
    """Log `dump_tasks()` on SIGUSR1 (from the loop's thread, between callbacks). Only a loop of the main thread
    can take signals: elsewhere (a server run inside a test's thread) nothing is installed."""
    try:
        loop.add_signal_handler(signal.SIGUSR1, lambda: log.warning("task dump (SIGUSR1):\n%s", dump_tasks()))
    except (RuntimeError, ValueError):
        log.debug("no task dump on SIGUSR1: not the main thread's loop")
