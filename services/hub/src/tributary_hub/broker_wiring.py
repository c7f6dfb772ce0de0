"""The API process's wiring to the broker: one FastStream broker serving the hub's RPC queue and the source
announcements, and what the hub itself sends on `tributary.control` (unitop changes, demand heartbeats)."""

from __future__ import annotations

import logging

from faststream.rabbit import RabbitBroker, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from pydantic import BaseModel

from tributary_common import rpc_contracts as rc
from tributary_common.control import Demand, SourceAnnouncement, UnitopChange
from tributary_common.exchanges import CONTROL, demand_key, unitop_key
from tributary_common.rpc import RpcServer

from .apikeys import ApiKeyService
from .history import EventHistory
from .rpc_handlers import register_rpc
from .samples_history import SampleHistory
from .sources import SourceRegistry
from .unitops import UnitopService

log = logging.getLogger("tributary_hub.runtime")  # the name operators know these messages by

SOURCES_QUEUE = "tributary.hub.sources"


def make_broker(
    amqp_url: str,
    *,
    graceful_timeout: float,
    rpc_concurrency: int,
    history: EventHistory,
    samples: SampleHistory,
    unitops: UnitopService,
    apikeys: ApiKeyService,
    sources: SourceRegistry,
) -> RabbitBroker:
    broker = RabbitBroker(amqp_url, logger=None, graceful_timeout=graceful_timeout)
    rpc = RpcServer(concurrency=rpc_concurrency)
    register_rpc(rpc, history, samples, unitops, apikeys)
    rpc.attach(broker, rc.HUB_QUEUE)

    @broker.subscriber(RabbitQueue(SOURCES_QUEUE, durable=True, routing_key="source.#"), CONTROL)
    async def _announcement(message: RabbitMessage) -> None:
        try:
            announcement = SourceAnnouncement.model_validate_json(message.body)
        except ValueError:
            log.warning("ignoring a malformed source announcement")
            return
        await sources.record(announcement)

    return broker


async def _control(broker: RabbitBroker, message: BaseModel, routing_key: str) -> None:
    await broker.publish(
        message.model_dump_json().encode(),
        exchange=CONTROL,
        routing_key=routing_key,
        mandatory=False,
        content_type="application/json",
    )


async def publish_unitop_change(broker: RabbitBroker, change: UnitopChange) -> None:
    await _control(broker, change, unitop_key(change.name))


async def publish_demand(broker: RabbitBroker, demand: Demand) -> None:
    await _control(broker, demand, demand_key(demand.source))
