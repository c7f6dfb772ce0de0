"""What the stream asks the hub over RPC (`tributary.rpc.hub`): history pages, unitop resolution, API keys."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import orjson

from tributary_common import rpc_contracts as rc
from tributary_common.amqp import RpcClient
from tributary_common.auth import AuthUnavailable, Principal, principal_from_claims
from tributary_common.rpc import RpcError
from tributary_common.ttl_cache import TtlCache


class HubRpc:
    def __init__(self, rpc: RpcClient, *, timeout_s: float, api_key_cache_s: float) -> None:
        # One call at a time (RpcClient's default): the catch-up's replay relies on that order.
        self.rpc = rpc
        self.timeout_s = timeout_s
        self.api_key_cache_s = api_key_cache_s
        self._keys: TtlCache[str, Principal | None] = TtlCache(api_key_cache_s, max_entries=10_000)
        self._pages: dict[str, asyncio.Future[tuple[list[dict[str, Any]], str | None]]] = {}

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        return await self.rpc.call(rc.HUB_QUEUE, method, params, timeout=self.timeout_s)

    async def events_page_raw(
        self, pattern: str, *, since: datetime | None, after_id: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of history (callers must not modify it: it may be shared, see `_page`)."""
        req = rc.EventsHistoryRequest(pattern=pattern, since=since, after_id=after_id, cursor=cursor, limit=limit)
        return await self._page(rc.EVENTS_HISTORY, req.model_dump(mode="json", exclude_none=True))

    async def samples_page_raw(
        self, sids: list[str], *, since: datetime | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        req = rc.SamplesHistoryRequest(sids=sids, since=since, cursor=cursor, limit=limit)
        return await self._page(rc.SAMPLES_HISTORY, req.model_dump(mode="json", exclude_none=True))

    async def _page(self, method: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """One RPC for all identical page requests in flight: after a restart, clients resume at once, mostly
        from the same last id, and would otherwise ask the hub for the same pages a hundred times over."""
        key = method + orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()
        shared = self._pages.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._fetch_page(method, params))
            self._pages[key] = shared
            shared.add_done_callback(lambda done: self._page_done(key, done))
        # Shielded: one caller giving up (its client left) does not cancel the others' request.
        return await asyncio.shield(shared)

    def _page_done(self, key: str, done: asyncio.Future[tuple[list[dict[str, Any]], str | None]]) -> None:
        if self._pages.get(key) is done:
            del self._pages[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so that no waiter left is no "never retrieved" warning

    async def _fetch_page(self, method: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        result = await self._call(method, params)
        if not isinstance(result, dict) or not isinstance(result.get("items"), list):
            raise RpcError("internal", f"{method}: reply without 'items'")
        return list(result["items"]), result.get("next")

    async def resolve_unitop(self, name: str) -> rc.UnitopResolved:
        result = await self._call(rc.UNITOP_RESOLVE, rc.UnitopResolveRequest(name=name).model_dump())
        return rc.UnitopResolved.model_validate(result)

    async def verify_api_key(self, key: str, *, fresh: bool = False) -> Principal | None:
        """The key's principal, or None when the hub does not know it; verdicts are cached briefly.
        `fresh`: ask the hub, which asks its database (re-verification of open streams); the verdict is cached."""
        now = time.monotonic()  # a verdict is fresh for api_key_cache_s from when it was asked for
        hit = self._keys.get(key)
        if hit is not None and not fresh:
            return hit.value
        try:
            request = rc.ApiKeyVerifyRequest(key=key, fresh=fresh).model_dump(exclude_defaults=True)
            result = await self._call(rc.APIKEY_VERIFY, request)
        except RpcError as exc:
            # The hub being unreachable is not the key's fault: no verdict, nothing cached; retry later (503 / 1013).
            raise AuthUnavailable(f"cannot verify the API key now ({exc.code}); retry later") from exc
        claims = rc.ApiKeyVerified.model_validate(result).claims
        principal = None if claims is None else principal_from_claims(claims, kind="api_key")
        self._keys.put(key, principal, expires=now + self.api_key_cache_s)
        return principal
