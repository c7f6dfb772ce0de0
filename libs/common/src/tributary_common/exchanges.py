"""The exchanges of SPEC.md, declared at start-up by every service that uses them.

Publishing to an undeclared exchange gets a 404 that breaks the shared channel, so declare first.
"""

from __future__ import annotations

from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange

from .amqp import topology
from .amqp.topology import demand_key, source_key, unitop_key

__all__ = ["demand_key", "source_key", "unitop_key"]


def _faststream(spec: topology.ExchangeSpec) -> RabbitExchange:
    return RabbitExchange(spec.name, type=ExchangeType(spec.type.value), durable=spec.durable)


# The faststream view of `amqp.topology`'s exchanges (the RPC broker and the control messages use faststream).
EVENTS = _faststream(topology.EVENTS)
SAMPLES = _faststream(topology.SAMPLES)
CONTROL = _faststream(topology.CONTROL)
DEAD = _faststream(topology.DEAD)
ALL = (EVENTS, SAMPLES, CONTROL, DEAD)

DEADLETTERS_QUEUE = topology.DEADLETTERS.name

RPC_HUB_QUEUE = topology.RPC_HUB.name


async def declare_exchanges(broker: RabbitBroker) -> None:
    for exchange in ALL:
        await broker.declare_exchange(exchange)
