"""One SSE stream as a streaming response: admitted like a websocket (admission.py), its records with keep-alive
comments, and everything given back however it ends.

A stream ends (after an `event: error` record when there is something to say) when its token expires or its API
key is revoked, when the subscription is refused or ends, and when the client does not read: its queue is bounded
like a websocket's (clients.py), and a stuck stream is cut off, its connection aborted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tributary_common.auth import Principal
from tributary_common.http_auth import bearer_token
from tributary_common.http_errors import ApiError

from .admission import ShuttingDown, admit, open_client
from .clients import Client
from .frames import SseEncoder
from .limits import Refused, Ticket
from .service import StreamService
from .transports import abort_handle


def _release(service: StreamService, client: Client, ticket: Ticket) -> None:
    # A refused request gives everything back; an accepted one keeps it until its response ends.
    service.close_client(client)
    ticket.release()


async def respond(
    request: Request, subscribe: Callable[[StreamService, Client, Ticket], StreamingResponse]
) -> StreamingResponse:
    """Admit the request, then `subscribe` its client: the response, or everything given back if refused."""
    service, client, ticket = await _open(request)
    try:
        return subscribe(service, client, ticket)
    except BaseException:
        _release(service, client, ticket)
        raise


async def _open(request: Request) -> tuple[StreamService, Client, Ticket]:
    service: StreamService = request.app.state.service

    def seen(principal: Principal) -> None:
        request.state.principal = principal.subject  # for the access log

    try:
        principal, api_key, ticket = await admit(service, bearer_token(request, allow_query=True), on_principal=seen)
    except ShuttingDown as exc:
        raise ApiError(503, exc.code, exc.message) from None
    except Refused as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    # AuthError and AuthUnavailable go to the app's error handlers (401 / 503), as on the hub.
    return service, open_client(service, principal, api_key, SseEncoder()), ticket


async def _records(client: Client, keepalive_s: float) -> AsyncIterator[str]:
    yield "retry: 2000\n\n"
    while True:
        frame = await client.next_frame(timeout=keepalive_s)
        if frame is not None:
            yield frame
            if not client.subs and not client.queue:
                return  # the subscription was refused or ended; its last event went out
            continue
        if client.closed or not client.subs:
            # Shut down, too slow, credentials ended, or the subscription was refused (its error went out).
            return
        yield ": keep-alive\n\n"


class SseResponse(StreamingResponse):
    """The records of one client. It owns the client: released however the response ends, and cut off (its
    connection aborted) when the client is killed, e.g. while stuck on a send to a peer that does not read."""

    def __init__(self, service: StreamService, client: Client, ticket: Ticket) -> None:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(
            _records(client, service.settings.sse_keepalive_s), media_type="text/event-stream", headers=headers
        )
        self.service = service
        self.client = client
        self.ticket = ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self.client
        abort: Callable[[], None] | None = abort_handle(scope)
        task = asyncio.ensure_future(super().__call__(scope, receive, send))
        client.on_abort = task.cancel
        try:
            await task
        except asyncio.CancelledError:
            if not client.killed:
                raise  # the server is stopping, not this client
            # Killed mid-send: nothing more can be written in order; drop the connection (buffer and all).
            if abort is not None:
                abort()
                await asyncio.sleep(0.05)  # let the transport report the loss before the server checks
        finally:
            client.on_abort = None
            _release(self.service, client, self.ticket)
