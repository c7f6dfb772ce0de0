"""uvicorn's httptools protocol with bounds on a request's line and headers, for every service's HTTP server.

- Size: httptools has no bound of its own: a peer that sends a header without end had it collected in memory
  (300 MB of header grew a process by 300 MB and took 112 s of CPU to parse). Beyond `MAX_HEAD_BYTES` the request
  is answered 431 and the connection closed. Only the bytes that may still be head reach the parser, so a chunk
  holding a whole head and the next pipelined request is not refused by mistake.
- Time: uvicorn waits for a head without end too (its keep-alive timeout starts only after a response), so a
  connection that sends nothing, or a byte now and then, was held open for good: enough of them take every file
  descriptor. A head not complete `HEAD_TIMEOUT_S` after the connection opened, or after its first bytes arrived,
  closes the connection; a response being written is never cut by it. The wait is armed only for a head that
  arrived incomplete (and for a new connection): a request whose head comes in one read costs no timer.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Far above any token, cookie or `Last-Event-ID` a route accepts.
MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 20.0


class BoundedHeadProtocol(HttpToolsProtocol):
    # Bytes of the request head being received (none counted once it is complete), and heads completed.
    head_bytes = 0
    in_head = True
    heads = 0
    head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._stop_waiting()
        self.head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_too_slow)

    def _stop_waiting(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_too_slow(self) -> None:
        self.head_timer = None
        if not self.in_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._await_head()  # a pipelined head waits behind a response being written, which is never cut
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._feed(data)
        # A head begun but not completed by this read must complete in time (one that came whole costs no timer).
        if self.in_head and self.head_bytes and self.head_timer is None and self.transport.get_protocol() is self:
            self._await_head()

    def _feed(self, data: bytes) -> None:
        if self.in_head and self.head_bytes + len(data) > MAX_HEAD_BYTES:
            # Only what may still be head goes to the parser; the rest only if the head ended within it.
            room = MAX_HEAD_BYTES - self.head_bytes
            heads = self.heads
            super().data_received(data[:room])
            if self.heads == heads:
                self._refuse_head()
                return
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # refused by the parser, or upgraded to a websocket
            data = data[room:]
        elif self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        msg = f"request line and headers over {MAX_HEAD_BYTES} bytes".encode()
        head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
        self.transport.write(head + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(msg) + msg)
        self.transport.close()

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.heads += 1
        self._stop_waiting()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head, self.head_bytes = True, 0  # keep-alive: the next request's head is counted afresh
