"""Opening an aio-pika connection: named (the name shows in the management UI), robust or not, and retried
with `Backoff` while the broker does not answer yet."""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from ..backoff import Backoff

log = logging.getLogger(__name__)


async def connect(url: str, *, name: str, robust: bool = True, timeout_s: float = 10.0) -> AbstractConnection:
    """A robust connection reopens itself and its channels, consumers and declarations after a broker outage;
    a plain one is for a caller that supervises reconnection itself (as the stream does, to report the gap)."""
    if robust:
        return await connect_robust(url, name=name, timeout_s=timeout_s)
    return await aio_pika.connect(url, timeout=timeout_s, client_properties={"connection_name": name})


async def connect_robust(url: str, *, name: str, timeout_s: float = 10.0) -> AbstractRobustConnection:
    return await aio_pika.connect_robust(url, timeout=timeout_s, client_properties={"connection_name": name})


async def connect_retrying(
    url: str, *, name: str, backoff: Backoff, robust: bool = True, timeout_s: float = 10.0
) -> AbstractConnection:
    """`connect`, retried with `backoff` until the broker answers (or the task is cancelled)."""
    while True:
        try:
            connection = await connect(url, name=name, robust=robust, timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - keep trying; readiness says what is wrong meanwhile
            delay = backoff.next_delay()
            log.warning("broker not reachable (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            continue
        backoff.reset()
        return connection
