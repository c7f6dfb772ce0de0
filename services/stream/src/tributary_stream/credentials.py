"""Streams do not outlive their credentials: a JWT's stream ends at its `exp`, an API key's once the hub no longer
knows the key (checked every `api_key_cache_s`: one RPC per distinct key per period, however many streams use it).
"""

from __future__ import annotations

import asyncio
import logging
import time

from tributary_common.auth import AuthError
from tributary_common.close_codes import POLICY_VIOLATION
from tributary_common.heartbeat import Heartbeat

from .clients import Client
from .hub_rpc import HubRpc

log = logging.getLogger(__name__)

# At most this many key checks in flight at once (each is one RPC to the hub).
CHECK_CONCURRENCY = 32


class CredentialWatch:
    def __init__(self, hub: HubRpc, period_s: float) -> None:
        self.hub = hub
        # A period of 0 (no key cache) still checks, just often.
        self.period_s = max(period_s, 0.5)
        self._timers: dict[Client, asyncio.TimerHandle] = {}
        self._keys: dict[str, set[Client]] = {}
        self._key_of: dict[Client, str] = {}
        # A round every period; a failed round is logged (with its traceback) and the next one goes on.
        self._rounds = Heartbeat(
            self.check_keys,
            interval_s=self.period_s,
            name="checking the API keys of open streams",
            first_at_once=False,
            traceback=True,
        )

    def watch(self, client: Client, api_key: str | None) -> None:
        exp = client.principal.claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            loop = asyncio.get_running_loop()
            delay = max(0.0, float(exp) - time.time())
            self._timers[client] = loop.call_at(loop.time() + delay, self._expired, client)
        if api_key is not None:
            self._keys.setdefault(api_key, set()).add(client)
            self._key_of[client] = api_key

    def forget(self, client: Client) -> None:
        timer = self._timers.pop(client, None)
        if timer is not None:
            timer.cancel()
        key = self._key_of.pop(client, None)
        if key is not None:
            clients = self._keys.get(key)
            if clients is not None:
                clients.discard(client)
                if not clients:
                    del self._keys[key]

    def _expired(self, client: Client) -> None:
        self._timers.pop(client, None)
        client.end(POLICY_VIOLATION, "token_expired", "the token expired; reconnect with a fresh one")

    # ---- API keys -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._rounds.start()

    async def stop(self) -> None:
        await self._rounds.stop()

    async def check_keys(self) -> None:
        """Ask the hub about every API key in use now; end the streams of those it no longer knows."""
        gate = asyncio.Semaphore(CHECK_CONCURRENCY)

        async def check(key: str) -> None:
            async with gate:
                try:
                    principal = await self.hub.verify_api_key(key, fresh=True)
                except AuthError as exc:
                    # The hub is unreachable: not the key's fault; its streams go on until the next round.
                    log.warning("cannot re-verify an API key of open streams: %s", exc)
                    return
            if principal is None:
                for client in list(self._keys.get(key, ())):
                    client.end(POLICY_VIOLATION, "credentials_revoked", "the API key was revoked")

        await asyncio.gather(*(check(k) for k in list(self._keys)))
