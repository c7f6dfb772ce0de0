"""Composition of one stream instance: broker connections, hub client, fan-out, demand, and draining.

Two connections to the broker: the instance queue's (broker_link.py, reconnected by the link itself, which
reports the outage to the clients), and a robust one for RPC to the hub and for publishing demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from aio_pika.abc import AbstractConnection

from tributary_common.amqp import EXCHANGES, ConfirmedPublisher, RpcClient, connect, stream_instance_queue
from tributary_common.auth import JwtVerifier, Principal
from tributary_common.close_codes import SERVICE_RESTART
from tributary_common.http_auth import Authenticator

from .broker_link import BrokerLink
from .clients import Client
from .credentials import CredentialWatch
from .dead_letters import DeadLetterOutbox
from .demand import demand_heartbeat
from .fanout import Fanout
from .hub_rpc import HubRpc
from .limits import Admission
from .metrics import StreamMetrics
from .settings import StreamSettings

log = logging.getLogger(__name__)

# Demand heartbeats in flight at once, and how long one waits for the broker's confirm (the next one retries).
PUBLISH_WINDOW = 16
PUBLISH_TIMEOUT_S = 10.0
# Readiness: how long the RPC connection may take to answer (be connected).
PING_TIMEOUT_S = 2.0


class StreamService:
    def __init__(self, settings: StreamSettings, *, tracing: bool = False) -> None:
        self.settings = settings
        self.metrics = StreamMetrics()
        # RPC to the hub and publishing demand; the instance queue has its own link (and connection).
        self.connection: AbstractConnection | None = None
        self.rpc = RpcClient()
        self.publisher = ConfirmedPublisher(window=PUBLISH_WINDOW, timeout_s=PUBLISH_TIMEOUT_S)
        self.hub = HubRpc(self.rpc, timeout_s=settings.rpc_timeout_s, api_key_cache_s=settings.api_key_cache_s)
        self.fanout = Fanout(settings, self, self.hub, self.metrics, tracing=tracing, on_demand_change=self._poke)
        queue = stream_instance_queue(settings.instance_id)
        dead_letters = DeadLetterOutbox(
            queue.name,
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
        self.demand = demand_heartbeat(
            self.publisher,
            self.fanout.demand,
            requester=settings.instance_id,
            interval_s=settings.demand_interval_s,
            ttl_s=settings.demand_ttl_s,
        )
        verifier = JwtVerifier.from_settings(settings)
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
        self.connection = await connect(self.settings.amqp_url, name=self.settings.service_name)
        await self.publisher.start(self.connection, *EXCHANGES)  # declared at start-up, as every service does
        await self.rpc.start(self.connection)
        await self.link.start()
        self.metrics.broker_connected.set(1)
        self.demand.start()
        self.credentials.start()

    async def ready(self) -> None:
        if self.draining:
            raise ConnectionError("shutting down")
        await self.link.check()
        try:
            if self.connection is None:
                raise TimeoutError
            await asyncio.wait_for(self.connection.connected.wait(), PING_TIMEOUT_S)
        except TimeoutError:
            raise ConnectionError("RPC connection to the broker does not answer") from None

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
        await self.rpc.close()
        await self.publisher.close()
        if self.connection is not None:
            await self.connection.close()
