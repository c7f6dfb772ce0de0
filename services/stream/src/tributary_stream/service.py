"""Composition of one stream instance: broker connections, hub client, fan-out, demand, and draining."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from faststream.rabbit import RabbitBroker

from tributary_common.auth import JwtVerifier, Principal
from tributary_common.close_codes import SERVICE_RESTART
from tributary_common.exchanges import declare_exchanges
from tributary_common.http_auth import Authenticator

from .broker_link import BrokerLink
from .clients import Client
from .credentials import CredentialWatch
from .dead_letters import DeadLetterOutbox
from .demand import DemandSender
from .fanout import Fanout
from .hub_rpc import HubRpc
from .limits import Admission
from .metrics import StreamMetrics
from .settings import StreamSettings

log = logging.getLogger(__name__)


class StreamService:
    def __init__(self, settings: StreamSettings, *, tracing: bool = False) -> None:
        self.settings = settings
        self.metrics = StreamMetrics()
        # faststream for RPC to the hub and for publishing demand; the instance queue has its own link.
        self.broker = RabbitBroker(settings.amqp_url, logger=None)
        self.hub = HubRpc(self.broker, timeout_s=settings.rpc_timeout_s, api_key_cache_s=settings.api_key_cache_s)
        self.fanout = Fanout(settings, self, self.hub, self.metrics, tracing=tracing, on_demand_change=self._poke)
        queue = f"tributary.stream.{settings.instance_id}"
        dead_letters = DeadLetterOutbox(
            queue,
            self.metrics.dead_lettered,
            self.metrics.dead_letters_lost,
            max_bytes=settings.dead_letter_outbox_bytes,
            log_interval_s=settings.dead_letter_log_interval_s,
        )
        self.link = BrokerLink(
            settings.amqp_url,
            queue,
            self.fanout.on_message,
            self._restored,
            dead_letters,
            prefetch=settings.prefetch,
            reconnect_initial_s=settings.reconnect_initial_s,
            reconnect_max_s=settings.reconnect_max_s,
        )
        self.demand = DemandSender(
            self.broker,
            self.fanout.demand,
            requester=settings.instance_id,
            interval_s=settings.demand_interval_s,
            ttl_s=settings.demand_ttl_s,
        )
        verifier = JwtVerifier(
            secret=settings.jwt_key(),
            algorithms=settings.jwt_algorithms,
            jwks_url=settings.jwks_url,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            claim_map=settings.claim_map,
        )
        self.auth = Authenticator(verifier, enabled=settings.auth_enabled, api_keys=self._verify_api_key)
        self.admission = Admission(settings.max_connections, settings.max_connections_per_principal)
        self.credentials = CredentialWatch(self.hub, settings.api_key_cache_s)
        self.draining = False

    async def authenticate(self, token: str | None) -> tuple[Principal, str | None]:
        """The token's principal, and the token itself when it is an API key (its streams are re-verified)."""
        principal = await self.auth.authenticate(token)
        # The Authenticator's rule: with auth on, a token that is not a JWT (two dots) is an API key.
        api_key = token if self.auth.enabled and token is not None and token.count(".") != 2 else None
        return principal, api_key

    def open_client(self, client: Client, api_key: str | None) -> None:
        self.fanout.add_client(client)
        self.credentials.watch(client, api_key)

    def close_client(self, client: Client) -> None:
        self.credentials.forget(client)
        self.fanout.remove_client(client)

    # Bindings port of the fan-out: the link, counted in the metrics.
    async def acquire(self, exchange: str, key: str, timeout: float = 10.0) -> None:
        await self.link.acquire(exchange, key, timeout)
        self.metrics.bindings.set(len(self.link.wanted))

    def release(self, exchange: str, key: str) -> None:
        self.link.release(exchange, key)
        self.metrics.bindings.set(len(self.link.wanted))

    async def _verify_api_key(self, key: str) -> Principal | None:
        return await self.hub.verify_api_key(key)

    def _poke(self) -> None:
        self.demand.poke()

    def _restored(self, started: datetime, ended: datetime) -> None:
        self.metrics.broker_connected.set(1)
        self.fanout.on_restored(started, ended)

    async def start(self) -> None:
        await self.broker.connect()
        await declare_exchanges(self.broker)
        await self.link.start()
        self.metrics.broker_connected.set(1)
        self.demand.start()
        self.credentials.start()

    async def ready(self) -> None:
        if self.draining:
            raise ConnectionError("shutting down")
        await self.link.check()
        if not await self.broker.ping(timeout=2.0):
            raise ConnectionError("RPC connection to the broker does not answer")

    async def drain(self, grace_s: float) -> None:
        """Graceful shutdown: take no new clients or messages, send what is queued, close with 1012."""
        if self.draining:
            return
        self.draining = True
        log.info("draining %d clients", len(self.fanout.clients))
        await self.link.stop_consuming()
        for client in list(self.fanout.clients):
            client.finish(SERVICE_RESTART)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.fanout.empty.wait(), grace_s)
        for client in list(self.fanout.clients):
            client.kill(SERVICE_RESTART)

    async def stop(self) -> None:
        await self.credentials.stop()
        await self.demand.stop()
        await self.link.close()
        await self.broker.stop()
