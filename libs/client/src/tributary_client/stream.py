"""Live subscriptions over the stream service's websocket, resumed without loss after a disconnect.

A `Subscription` is an async iterator of server frames (`event`, `samples`, `gap`). It remembers the last
position it delivered (the last event id, or the last sample time of each unitop item) and, when the connection
drops or the server reports a `gap`, subscribes again with `since` set to that position, so the server replays
what was missed from history and nothing is delivered twice. The `gap` frame is still yielded, for the record.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from .errors import TributaryError

log = logging.getLogger(__name__)
_ids = itertools.count(1)


class StreamClient:
    def __init__(self, url: str = "ws://127.0.0.1:8001", token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def events(self, pattern: str, *, since: str | None = None) -> Subscription:
        """Events whose routing key `<topic>[.<subject>]` matches the AMQP `pattern` (e.g. `orders.eu.#`)."""
        return Subscription(self, {"events": {"pattern": pattern}}, since)

    def unitop(self, name: str, *, items: list[str] | None = None, since: str | None = None) -> Subscription:
        """Samples of a unitop's items (all, or those named)."""
        spec: dict[str, Any] = {"name": name}
        if items:
            spec["items"] = items
        return Subscription(self, {"unitop": spec}, since)

    async def connect(self) -> ClientConnection:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        return await websockets.connect(f"{self.url}/ws", additional_headers=headers, max_size=2**22)


class Subscription:
    def __init__(
        self,
        client: StreamClient,
        target: dict[str, Any],
        since: str | None,
        *,
        reconnect: bool = True,
        max_backoff_s: float = 10.0,
    ) -> None:
        self.client = client
        self.target = target
        # Where a resume starts: the last event id, or the last sample time per unitop item.
        self.position: str | None = since
        self.item_times: dict[str, str] = {}
        self.reconnect = reconnect
        self.max_backoff_s = max_backoff_s
        self.reconnects = 0
        # Before the first subscription is confirmed, give up after this many failed connections (None: never):
        # a command line wants "the stream is unreachable" rather than retrying a wrong URL forever.
        self.first_connect_attempts: int | None = None
        self._subscribed_once = False
        self.id = f"s{next(_ids)}"
        self._closed = False

    def _subscribe_frame(self) -> bytes:
        kind, spec = next(iter(self.target.items()))
        spec = dict(spec)
        if self.item_times:
            spec["since"] = {"items": dict(self.item_times), **({"time": self.position} if self.position else {})}
        elif self.position is not None:
            spec["since"] = self.position
        return orjson.dumps({"op": "subscribe", "id": self.id, kind: spec})

    def _advance(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "event":
            self.position = frame["event"]["id"]
        elif kind == "samples" and frame.get("samples") and frame.get("item"):
            # Samples within a batch are in time order; RFC 3339 UTC strings of one format compare as times.
            self.item_times[str(frame["item"])] = str(frame["samples"][-1]["t"])
        elif kind == "gap" and isinstance(frame.get("last"), dict):
            last = frame["last"]
            if last.get("id"):
                self.position = str(last["id"])
            for item, t in (last.get("items") or {}).items():
                if t:
                    self.item_times[str(item)] = str(t)

    def close(self) -> None:
        self._closed = True

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        attempt = 0
        while not self._closed:
            try:
                async with await self.client.connect() as ws:
                    await ws.send(self._subscribe_frame().decode())
                    async for raw in ws:
                        frame = orjson.loads(raw)
                        kind = frame.get("type")
                        if kind == "error":
                            raise TributaryError(400, str(frame.get("code", "error")), str(frame.get("message", "")))
                        if kind == "subscribed":
                            attempt = 0
                            self._subscribed_once = True
                            continue
                        if kind in ("event", "samples", "gap"):
                            self._advance(frame)
                            yield frame
                        if kind == "gap":
                            # Resume from the last position delivered: history fills what was skipped.
                            await ws.send(orjson.dumps({"op": "unsubscribe", "id": self.id}).decode())
                            self.id = f"s{next(_ids)}"
                            await ws.send(self._subscribe_frame().decode())
                        if self._closed:
                            return
            except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake) as exc:
                if isinstance(exc, websockets.InvalidStatus) and exc.response.status_code in (401, 403):
                    raise TributaryError(
                        exc.response.status_code, "unauthorized", "the stream refused the token"
                    ) from exc
                if not self.reconnect or self._closed:
                    raise
                attempt += 1
                limit = self.first_connect_attempts
                if not self._subscribed_once and limit is not None and attempt >= limit:
                    raise
                self.reconnects += 1
                delay = min(self.max_backoff_s, 0.2 * 2**attempt) * random.uniform(0.5, 1.0)
                log.info("stream connection lost (%s); resuming from %s in %.1f s", exc, self.position, delay)
                await asyncio.sleep(delay)
