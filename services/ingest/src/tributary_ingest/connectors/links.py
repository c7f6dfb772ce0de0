"""One live connection per endpoint, shared by every sid that reads through it (reference-counted), and the base
class of the connectors that read that way (`LinkedConnector`).

The first `attach` of a key opens the link; later ones wait for the same opening; the last `detach` closes it. A
link that breaks calls `lost(key, link, error)`: every sid attached to it is failed (`on_lost`), so the framework
unsubscribes each and subscribes it again after a jittered backoff, which opens a new link (and backfills the
sids whose connector keeps history). An opening that fails fails each attaching sid the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Protocol, TypeVar

from ..sdk import Connector, P, Sink

log = logging.getLogger(__name__)


class Link(Protocol):
    async def close(self) -> None: ...


L = TypeVar("L", bound=Link)


@dataclass
class _Entry(Generic[L]):
    opening: asyncio.Task[L]
    sids: set[str] = field(default_factory=set)


class SharedLinks(Generic[L]):
    def __init__(self, on_lost: Callable[[str, BaseException], None]) -> None:
        self._on_lost = on_lost
        self._entries: dict[Hashable, _Entry[L]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    async def attach(self, key: Hashable, sid: str, open_link: Callable[[], Awaitable[L]]) -> L:
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(asyncio.ensure_future(open_link()))
            self._entries[key] = entry
        entry.sids.add(sid)
        try:
            return await asyncio.shield(entry.opening)
        except BaseException:
            entry.sids.discard(sid)
            if self._entries.get(key) is entry and (entry.opening.done() or not entry.sids):
                del self._entries[key]  # a failed opening is not kept: the next attach tries anew
                if not entry.opening.done():
                    entry.opening.cancel()
            raise

    def get(self, key: Hashable) -> L | None:
        """The open link of `key`, if any (browsing reuses it)."""
        entry = self._entries.get(key)
        if entry is None or not entry.opening.done() or entry.opening.cancelled() or entry.opening.exception():
            return None
        return entry.opening.result()

    async def detach(self, key: Hashable, sid: str) -> None:
        entry = self._entries.get(key)
        if entry is None or sid not in entry.sids:
            return
        entry.sids.discard(sid)
        if not entry.sids:
            del self._entries[key]
            await self._close(entry)

    def lost(self, key: Hashable, link: L, error: BaseException) -> None:
        """`link` broke: forget it and fail every sid on it."""
        entry = self._entries.get(key)
        if entry is None or self.get(key) is not link:
            return
        del self._entries[key]
        for sid in sorted(entry.sids):
            self._on_lost(sid, error)
        task = asyncio.ensure_future(self._close(entry))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        await asyncio.gather(*(self._close(e) for e in entries), return_exceptions=True)

    @staticmethod
    async def _close(entry: _Entry[L]) -> None:
        if not entry.opening.done():
            entry.opening.cancel()
            with contextlib.suppress(BaseException):
                await entry.opening
            return
        if entry.opening.cancelled() or entry.opening.exception() is not None:
            return
        try:
            await entry.opening.result().close()
        except Exception:
            log.debug("closing a link failed", exc_info=True)


class LinkedConnector(Connector[P], Generic[P, L]):
    """A push-style connector whose sids share links: subscribing attaches the sid to its link (opening it first if
    needed) and joins it there; unsubscribing leaves and detaches; stopping closes every link.

    Subclasses say which link a sid's params go to (`link_key`), how to open one (`open_link`), and how a sid joins
    and leaves an open link (`join`, `leave`).
    """

    # How long leaving a link may take before the sid is detached regardless; None: wait, and let errors out.
    leave_timeout_s: ClassVar[float | None] = 5.0

    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self.links: SharedLinks[L] = SharedLinks(sink.fail)
        self._keys: dict[str, Hashable] = {}

    def link_key(self, params: P) -> Hashable:
        raise NotImplementedError

    async def open_link(self, params: P, key: Hashable) -> L:
        raise NotImplementedError

    async def join(self, link: L, sid: str, params: P) -> None:
        raise NotImplementedError

    async def leave(self, link: L, sid: str) -> None:
        raise NotImplementedError

    async def subscribe(self, sid: str, params: P) -> None:
        await self.unsubscribe(sid)
        key = self.link_key(params)
        link = await self.links.attach(key, sid, lambda: self.open_link(params, key))
        self._keys[sid] = key
        try:
            await self.join(link, sid, params)
        except BaseException:
            await self.unsubscribe(sid)
            raise

    async def unsubscribe(self, sid: str) -> None:
        key = self._keys.pop(sid, None)
        if key is None:
            return
        link = self.links.get(key)
        if link is not None:
            if self.leave_timeout_s is None:
                await self.leave(link, sid)
            else:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.leave_timeout_s):
                        await self.leave(link, sid)
        await self.links.detach(key, sid)

    async def stop(self) -> None:
        await self.links.close_all()
