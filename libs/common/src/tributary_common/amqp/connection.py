"""Opening an aio-pika connection: named (the name shows in the management UI), robust or not, and retried
with `Backoff` while the broker does not answer yet.

`url` may list the nodes of a cluster, comma-separated (`TRIBUTARY_AMQP_URL=amqp://u:p@rabbit-0/,amqp://u:p@
rabbit-1/`; a comma inside a password is written `%2C`). A connection goes to any node that answers, starting
at a random one (so that processes spread over the nodes); a robust connection that loses its node reconnects
to the next one in turn, waiting with `Backoff` only after a whole round of nodes failed.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from yarl import URL

from ..backoff import Backoff

log = logging.getLogger(__name__)

SCHEMES = ("amqp", "amqps")
# aio-pika's own pause between reconnection attempts (its default is 5 s); ours comes after a failed round.
RECONNECT_INTERVAL_S = 0.5


def parse_urls(value: str) -> list[str]:
    """The AMQP URLs of a comma-separated list; ValueError (without passwords) when one is not an AMQP URL."""
    urls = [part.strip() for part in value.split(",") if part.strip()]
    if not urls:
        raise ValueError("no AMQP URL given")
    for url in urls:
        parsed = URL(url)
        if parsed.scheme not in SCHEMES or not parsed.host:
            shown = parsed.with_password("***") if parsed.password else parsed
            raise ValueError(f"not an AMQP URL (amqp://user:password@host:port/vhost): {shown}")
    return urls


def rotation(urls: list[str], rng: random.Random | None = None) -> list[str]:
    """The URLs starting at a random one, then in order (a round-robin over the nodes)."""
    start = (rng or random).randrange(len(urls))
    return urls[start:] + urls[:start]


class MultiNodeConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection (channels, queues, bindings and consumers restored after a loss), where each
    reconnection attempt goes to the next node of `urls`."""

    def __init__(self, url: URL, *args: Any, urls: list[str], backoff: Backoff, **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)
        self.urls = [URL(u) for u in urls]
        self._index = 0
        self._attempts = 0
        self._failures = 0
        self._backoff = backoff

    # aio-pika's connection factory calls this (name-mangled) method for every attempt; tests/common/
    # test_amqp_connection.py checks that a lost node is followed by the next one, so an aio-pika change shows.
    async def _RobustConnection__connect_transport(self) -> None:
        if self._attempts:
            if self._failures and self._failures % len(self.urls) == 0:
                delay = self._backoff.next_delay()
                log.warning("no node of %d answered; next round in %.1f s", len(self.urls), delay)
                await asyncio.sleep(delay)
            self._index = (self._index + 1) % len(self.urls)
            self.url = self.urls[self._index]
            log.info("connecting to the next node, %s", self)
        self._attempts += 1
        self._failures += 1
        await super()._RobustConnection__connect_transport()  # type: ignore[misc]
        self._failures = 0
        self._backoff.reset()


async def connect(url: str, *, name: str, robust: bool = True, timeout_s: float = 10.0) -> AbstractConnection:
    """A robust connection reopens itself and its channels, consumers and declarations after a broker outage;
    a plain one is for a caller that supervises reconnection itself (as the stream does, to report the gap)."""
    if robust:
        return await connect_robust(url, name=name, timeout_s=timeout_s)
    return await _first_answering(url, name=name, timeout_s=timeout_s, robust=False)


async def connect_robust(url: str, *, name: str, timeout_s: float = 10.0) -> AbstractRobustConnection:
    connection = await _first_answering(url, name=name, timeout_s=timeout_s, robust=True)
    assert isinstance(connection, AbstractRobustConnection)
    return connection


async def _first_answering(url: str, *, name: str, timeout_s: float, robust: bool) -> AbstractConnection:
    """The first node of the rotation that answers; the last error when none does."""
    urls = rotation(parse_urls(url))
    error: BaseException | None = None
    for i, node in enumerate(urls):
        try:
            if not robust:
                return await aio_pika.connect(node, timeout=timeout_s, client_properties={"connection_name": name})
            connection = MultiNodeConnection(
                URL(node),
                urls=urls[i:] + urls[:i],
                backoff=Backoff(0.5, 10.0),
                client_properties={"connection_name": name},
                reconnect_interval=str(RECONNECT_INTERVAL_S),
            )
            await connection.connect(timeout=timeout_s)
            return connection
        except Exception as exc:  # noqa: BLE001 - try the next node; the caller gets the last error
            if len(urls) > 1:
                log.warning("node %d of %d not reachable: %s", i + 1, len(urls), exc)
            error = exc
    assert error is not None
    raise error


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
