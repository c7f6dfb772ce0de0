"""Server-sent events from the stream service, resumed with `Last-Event-ID`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse

from .errors import TributaryError


async def sse_events(
    url: str, path: str, *, token: str | None = None, last_event_id: str | None = None, since: str | None = None
) -> AsyncIterator[tuple[str, str, Any]]:
    """(event type, id, data) for every SSE message of `path` (e.g. `/events/orders.%23`), from `since` (a time
    or an event id) or after `last_event_id` (the `id` of the last message received, to resume)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(base_url=url.rstrip("/"), timeout=httpx.Timeout(10, read=None)) as http,
        aconnect_sse(http, "GET", path, headers=headers, params={"since": since} if since else None) as source,
    ):
        if source.response.status_code >= 400:
            await source.response.aread()
            raise TributaryError.from_response(source.response)
        async for message in source.aiter_sse():
            yield message.event, message.id, orjson.loads(message.data) if message.data else None
