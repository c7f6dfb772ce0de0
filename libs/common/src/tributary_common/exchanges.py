"""The exchanges of SPEC.md, declared at start-up by every service that uses them.

Publishing to an undeclared exchange gets a 404 that breaks the shared channel, so declare first.
"""

from __future__ import annotations

from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange

EVENTS = RabbitExchange("tributary.events", type=ExchangeType.TOPIC, durable=True)
SAMPLES = RabbitExchange("tributary.samples", type=ExchangeType.TOPIC, durable=True)
CONTROL = RabbitExchange("tributary.control", type=ExchangeType.TOPIC, durable=True)
# Messages a consumer can never use, with their reason in headers (x-death-reason, x-original-exchange,
# x-original-routing-key, x-first-failure); the routing key names the queue they came from.
DEAD = RabbitExchange("tributary.dead", type=ExchangeType.TOPIC, durable=True)
ALL = (EVENTS, SAMPLES, CONTROL, DEAD)

# Bound to DEAD with `#` so that dead letters are kept until an operator replays or deletes them.
DEADLETTERS_QUEUE = "tributary.deadletters"

RPC_HUB_QUEUE = "tributary.rpc.hub"


def demand_key(source: str) -> str:
    return f"demand.{source}"


def source_key(source: str) -> str:
    return f"source.{source}"


def unitop_key(name: str) -> str:
    return f"unitop.{name}"


async def declare_exchanges(broker: RabbitBroker) -> None:
    for exchange in ALL:
        await broker.declare_exchange(exchange)
