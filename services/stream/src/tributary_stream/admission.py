"""Admission of a websocket or an SSE stream, the same for both: not while draining, within the connection limits,
authenticated; then its client is opened. Each endpoint maps a refusal to its edge (close code, HTTP status).

Raises `ShuttingDown`, `Refused` (a limit; counted here), or the authenticator's `AuthError` / `AuthUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable

from tributary_common.auth import Principal

from .clients import Client
from .frames import Encoder
from .limits import Refused, Ticket
from .service import StreamService


class ShuttingDown(Exception):
    """The server is draining: the client should reconnect (to another instance)."""

    code = "shutting_down"
    message = "the server is restarting; reconnect"


async def admit(
    service: StreamService, token: str | None, *, on_principal: Callable[[Principal], None] = lambda _: None
) -> tuple[Principal, str | None, Ticket]:
    """The connection's principal, its API key (if it is one) and its ticket among the connection limits
    (released here on failure; the caller's to release once admitted)."""
    if service.draining:
        raise ShuttingDown(ShuttingDown.message)
    try:
        ticket = service.admission.enter()
    except Refused as exc:
        service.metrics.refused.labels(exc.code).inc()
        raise
    try:
        principal, api_key = await service.authenticate(token)
        on_principal(principal)
        ticket.admit(principal.subject)
    except Refused as exc:
        ticket.release()
        service.metrics.refused.labels(exc.code).inc()
        raise
    except BaseException:
        ticket.release()
        raise
    return principal, api_key, ticket


def open_client(service: StreamService, principal: Principal, api_key: str | None, encoder: Encoder) -> Client:
    """A client with the configured queue bounds, known to the fan-out and watched for its credentials' end."""
    settings = service.settings
    client = Client(
        principal,
        encoder,
        service.metrics,
        max_queue=settings.send_queue_max,
        max_bytes=settings.max_send_buffer_bytes,
        slow_timeout_s=settings.slow_client_timeout_s,
    )
    service.open_client(client, api_key)
    return client
