"""uvicorn's protocols, with what a server needs against peers that stop reading.

- Websockets: a close frame never waits for the peer to read. It is written behind what the transport holds
  (bounded by its high-water mark), and a peer that has not completed the closing handshake within uvicorn's
  close timeout is aborted, not merely closed (a plain close waits for the buffer to drain, i.e. forever).
- HTTP: each request's scope carries `ABORT_EXTENSION`, with which the SSE route drops a stuck connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from starlette.types import Scope
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

ABORT_EXTENSION = "tributary.abort"


class StreamWebSocketProtocol(WebSocketsSansIOProtocol):
    async def send(self, message: ASGISendEvent) -> None:
        closing = (
            message["type"] == "websocket.close"
            and self.handshake_complete
            and self.initial_response is None
            and not self.close_sent
            and not self.disconnected
        )
        if not closing:
            await super().send(message)
            return
        # The app stopped sending data; the close frame may go behind the bounded buffer even while paused.
        self.writable.set()
        await super().send(message)
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)


class StreamHttpProtocol(HttpToolsProtocol):
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
