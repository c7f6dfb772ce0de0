"""One way to run uvicorn: quiet logs (ours, not uvicorn's config), no access log of its own, and a choice of
who handles SIGTERM.

    server = Server(server_config(app, host=s.http_host, port=s.http_port, graceful_s=s.shutdown_grace_seconds))
    server.run()                                   # blocking, uvicorn's own signal handling (the hub's API)

    await Server(config, signals="quiet").serve()  # SIGTERM ends serve() normally (no re-raise): ingest
    Server(config, drain=service.drain_for_grace)  # first SIGTERM drains, then stops; a second exits: stream
    server = Server(config, signals="owner")       # installs nothing: the process handles signals (workers)
    await server.start(); ...; await server.stop() # in the background, the port bound before start returns

`signals`:
    "uvicorn"  uvicorn's handlers; after shutdown it re-raises the signal (the process ends by it)
    "quiet"    handlers on the running loop that shut the server down; the process goes on afterwards
    "owner"    none (uvicorn's would replace the process's own)
Except as "owner", SIGUSR1 logs where every asyncio task waits (`task_dump`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import Any, Literal

import uvicorn

from . import task_dump
from .edge_sampling import EdgeDecision
from .http_head import BoundedHeadProtocol

SignalMode = Literal["uvicorn", "quiet", "owner"]


def server_config(
    app: Any,
    *,
    host: str,
    port: int,
    graceful_s: float | None = None,
    lifespan: Literal["auto", "on", "off"] = "auto",
    proxy_headers: bool = False,
    **options: Any,
) -> uvicorn.Config:
    """`graceful_s`: how long open requests may finish on shutdown (None: uvicorn's default, unbounded). HTTP is
    uvicorn's httptools protocol with a bounded request head (`http_head`), unless `http` says otherwise.
    `proxy_headers` off by default: X-Forwarded-For is read by the access log, from trusted proxies only."""
    return uvicorn.Config(
        EdgeDecision(app),  # a request's trace decided before FastAPI's telemetry (edge_sampling)
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=proxy_headers,
        timeout_graceful_shutdown=None if graceful_s is None else int(graceful_s),
        lifespan=lifespan,
        **{"http": BoundedHeadProtocol, **options},
    )


class Server(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        *,
        signals: SignalMode = "uvicorn",
        drain: Callable[[], Awaitable[None]] | None = None,
        name: str = "http server",
    ) -> None:
        super().__init__(config)
        self.name = name  # in log messages and task names
        self.signals = signals
        # On the first signal: await `drain()`, then shut down; a second signal shuts down at once.
        self.drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.signals == "uvicorn":
            with super().capture_signals():
                yield
            return
        if self.signals == "owner":
            yield
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        if self.signals != "owner":  # an owner's process handles its signals, SIGUSR1 too
            task_dump.install(self._loop)
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain is None or self._drain_task is not None or self._loop is None:
            super().handle_exit(sig, frame)
            return
        # uvicorn's handler runs outside the loop (signal.signal): hand the drain to the loop's thread.
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        drain = self.drain
        assert drain is not None

        async def drained() -> None:
            try:
                await drain()
            finally:
                self.should_exit = True

        self._drain_task = asyncio.create_task(drained(), name=f"{self.name.replace(' ', '-')}-drain")

    async def start(self, timeout_s: float = 10.0) -> None:
        """Serve in the background; listening when this returns, an OSError when the port cannot be bound."""
        config = self.config
        # Bound here, not by uvicorn: its bind failure is a SystemExit that would end the whole process.
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((config.host, config.port))
        except OSError:
            sock.close()
            raise
        self._task = asyncio.create_task(self.serve(sockets=[sock]), name=self.name.replace(" ", "-"))
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.started:
            if self._task.done() or asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise TimeoutError(f"{self.name} did not start on {config.host}:{config.port}")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """End a server `start`ed in the background (idempotent)."""
        task, self._task = self._task, None
        if task is None:
            return
        self.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await task
