"""uvicorn's protocols, with what a server needs against peers that stop reading.

- Websockets: a close frame never waits for the peer to read. It is written behind what the transport holds
  (bounded by its high-water mark), and a peer that has not completed the closing handshake within uvicorn's
  close timeout is aborted, not merely closed (a plain close waits for the buffer to drain, i.e. forever).
- HTTP: each request's scope carries `ABORT_EXTENSION`, with which the SSE route drops a stuck connection; its
  head is bounded as on every service (`tributary_common.http_head`).
- Websockets carry `SEND_NOW_EXTENSION`: a text frame written at once, without a task switch or an ASGI message
  (fan-out writes one frame to many sockets in a row). Paths in `direct` skip the application's middleware and
  routing (none of which act on websockets), which an idle connection would otherwise keep a frame of each.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

from starlette.types import ASGIApp, Scope
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN, Protocol
from websockets.streams import StreamReader

from tributary_common.http_head import BoundedHeadProtocol

from .waiters import Flag, Inbox

ABORT_EXTENSION = "tributary.abort"
SEND_NOW_EXTENSION = "tributary.send_now"

# The last text written and its wire form: a broadcast frames one message once for all uncompressed sockets.
_last_text: list[Any] = [None, b""]


def _wire(text: str) -> bytes:
    if _last_text[0] is not text:
        _last_text[0] = text
        _last_text[1] = Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])
    return cast(bytes, _last_text[1])


# Sockets with frames written by `send_now` in this turn of the loop: flushed together on the next turn, one
# system call per socket for all the messages fanned out meanwhile (the cost of a fan-out is its send calls).
_unflushed: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[StreamWebSocketProtocol]]
_unflushed = weakref.WeakKeyDictionary()
# Frames held for a socket beyond this are written at once (asyncio's write high-water mark is 64 KiB).
FLUSH_BYTES = 32 * 1024
# A websocket ping gets no pong while this much output waits for the peer: control frames never reach the
# application (no rate limit, no send budget), so a peer sending pings without reading grew the buffer unbounded.
MAX_PONG_BACKLOG = 256 * 1024


def _flush_all(loop: asyncio.AbstractEventLoop) -> None:
    for protocol in _unflushed.pop(loop, ()):
        protocol.flush()


class StreamWebSocketProtocol(WebSocketsSansIOProtocol):
    direct: ClassVar[Mapping[str, ASGIApp]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()
        self.unflushed: list[bytes] | None = None
        self.unflushed_bytes = 0

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code != 101:
            return
        # The scope holds a copy of the headers; the parsed request is not needed any more. The handshake's
        # parser keeps it in a local for the connection's life: at a frame boundary, a fresh frame parser.
        del self.request
        if _at_frame_boundary(self.conn.parser):
            self.conn.parser = Protocol.parse(self.conn)
            next(self.conn.parser)
        self.scope["extensions"][SEND_NOW_EXTENSION] = {"send": self.send_now}  # type: ignore[index]
        app = self.direct.get(self.scope["path"])
        if app is not None:
            self.app = app  # run_asgi has not started yet

    def send_now(self, text: str) -> bool:
        """Write a text frame now; False when it cannot go at once (paused transport, closing, not accepted)."""
        if (
            not self.writable.is_set()
            or self.disconnected
            or self.close_sent
            or not self.handshake_complete
            or self.initial_response is not None
            or self.transport.is_closing()
            or self.conn.state is not OPEN
        ):
            return False
        if self.conn.extensions or self.conn.writes:  # compressed (per socket), or behind pending output
            self.flush()
            self.conn.send_text(text.encode())
            self.transport.write(b"".join(self.conn.data_to_send()))
        elif self.unflushed is not None:
            self.unflushed.append(_wire(text))
            self.unflushed_bytes += len(self.unflushed[-1])
            if self.unflushed_bytes >= FLUSH_BYTES:
                self.flush()  # the transport sees it now: past its high-water mark it pauses us
        else:
            self.unflushed = [_wire(text)]
            self.unflushed_bytes = len(self.unflushed[0])
            waiting = _unflushed.get(self.loop)
            if waiting is None:
                waiting = _unflushed[self.loop] = []
                self.loop.call_soon(_flush_all, self.loop)
            waiting.append(self)
        return True

    def handle_ping(self) -> None:
        if self.transport.get_write_buffer_size() > MAX_PONG_BACKLOG:
            self.conn.data_to_send()  # the pong is dropped: the peer is not reading what it was sent
            return
        super().handle_ping()

    def flush(self) -> None:
        """Write the frames `send_now` took (before anything else is written to the socket)."""
        frames, self.unflushed = self.unflushed, None
        if frames and not self.transport.is_closing():
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def shutdown(self) -> None:
        self.flush()
        super().shutdown()

    async def send(self, message: ASGISendEvent) -> None:
        self.flush()
        closing = (
            message["type"] == "websocket.close"
            and self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.disconnected
        )
        if not closing:
            await super().send(message)
            if message["type"] == "websocket.accept":
                self.__dict__.pop("response", None)  # sent: its headers are not needed any more
            return
        # The app stopped sending data; the close frame may go behind the bounded buffer even while paused.
        self.writable.set()
        await super().send(message)
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)


def _at_frame_boundary(parser: Any) -> bool:
    """Whether websockets' parser waits for the next frame (nothing of one consumed yet)."""
    while getattr(parser, "gi_yieldfrom", None) is not None:
        parser = parser.gi_yieldfrom
    return getattr(parser, "gi_code", None) is StreamReader.at_eof.__code__


def direct_websockets(routes: Mapping[str, ASGIApp]) -> type[StreamWebSocketProtocol]:
    """StreamWebSocketProtocol serving `routes` (path -> ASGI app) past the application."""
    return type("DirectWebSocketProtocol", (StreamWebSocketProtocol,), {"direct": dict(routes)})


def send_now_handle(scope: Scope) -> Callable[[str], bool] | None:
    """The websocket's immediate text send, when the server provides one (not under other servers)."""
    handle = (scope.get("extensions") or {}).get(SEND_NOW_EXTENSION) or {}
    send = handle.get("send")
    return cast(Callable[[str], bool], send) if callable(send) else None


class StreamHttpProtocol(BoundedHeadProtocol):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        scope = cast(dict[str, Any], self.scope)
        scope.setdefault("extensions", {})[ABORT_EXTENSION] = {"abort": self.transport.abort}


def abort_handle(scope: Scope) -> Callable[[], None] | None:
    """The connection's abort, when the server provides one (not under other servers or test clients)."""
    ext = scope.get("extensions") or {}
    handle = ext.get(ABORT_EXTENSION) or {}
    abort = handle.get("abort")
    return cast(Callable[[], None], abort) if callable(abort) else None
