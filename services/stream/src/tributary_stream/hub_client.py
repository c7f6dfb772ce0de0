"""What the stream asks the hub over RPC (`tributary.rpc.hub`): history pages, unitop resolution, API keys."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from faststream.rabbit import RabbitBroker

from tributary_common import rpc_contracts as rc
from tributary_common.auth import AuthError, Principal, principal_from_claims
from tributary_common.rpc import RpcError, call


class HubClient:
    def __init__(self, broker: RabbitBroker, *, timeout_s: float, api_key_cache_s: float) -> None:
        self.broker = broker
        self.timeout_s = timeout_s
        self.api_key_cache_s = api_key_cache_s
        self._keys: dict[str, tuple[float, Principal | None]] = {}

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        return await call(self.broker, rc.HUB_QUEUE, method, params, timeout=self.timeout_s)

    async def events_page_raw(
        self, pattern: str, *, since: datetime | None, after_id: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        req = rc.EventsHistoryRequest(pattern=pattern, since=since, after_id=after_id, cursor=cursor, limit=limit)
        result = await self._call(rc.EVENTS_HISTORY, req.model_dump(mode="json", exclude_none=True))
        if not isinstance(result, dict) or not isinstance(result.get("items"), list):
            raise RpcError("internal", "events.history: reply without 'items'")
        return list(result["items"]), result.get("next")

    async def samples_page_raw(
        self, sids: list[str], *, since: datetime | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        req = rc.SamplesHistoryRequest(sids=sids, since=since, cursor=cursor, limit=limit)
        result = await self._call(rc.SAMPLES_HISTORY, req.model_dump(mode="json", exclude_none=True))
        if not isinstance(result, dict) or not isinstance(result.get("items"), list):
            raise RpcError("internal", "samples.history: reply without 'items'")
        return list(result["items"]), result.get("next")

    async def resolve_unitop(self, name: str) -> rc.UnitopResolved:
        result = await self._call(rc.UNITOP_RESOLVE, rc.UnitopResolveRequest(name=name).model_dump())
        return rc.UnitopResolved.model_validate(result)

    async def verify_api_key(self, key: str, *, fresh: bool = False) -> Principal | None:
        """The key's principal, or None when the hub does not know it; verdicts are cached briefly.
        `fresh`: ask the hub, which asks its database (re-verification of open streams); the verdict is cached."""
        now = time.monotonic()
        hit = self._keys.get(key)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        try:
            request = rc.ApiKeyVerifyRequest(key=key, fresh=fresh).model_dump(exclude_defaults=True)
            result = await self._call(rc.APIKEY_VERIFY, request)
        except RpcError as exc:
            # The hub being unreachable is not the key's fault: no verdict, nothing cached.
            raise AuthError(f"cannot verify the API key now ({exc.code})") from exc
        claims = rc.ApiKeyVerified.model_validate(result).claims
        principal = None if claims is None else principal_from_claims(claims, kind="api_key")
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[key] = (now + self.api_key_cache_s, principal)
        return principal
