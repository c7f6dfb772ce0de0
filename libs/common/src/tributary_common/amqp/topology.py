"""Every exchange, queue and routing key of Tributary on RabbitMQ, defined once, as data.

Names and arguments are byte-identical to what the services declared before this module existed: queues live
on brokers with their arguments, and a declare that differs is refused (PRECONDITION_FAILED).

A queue whose name depends on an instance or a source is built by a function (`stream_instance_queue(id)`);
routing keys by builders (`sample_key(source, sid)`), so nobody spells `unitop.` or `demand.` by hand.
`declare_queue(channel, spec)` declares a queue, the exchanges it is bound to and its bindings, in that order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from ..names import routing_key


@dataclass(frozen=True)
class ExchangeSpec:
    name: str
    type: aio_pika.ExchangeType = aio_pika.ExchangeType.TOPIC
    durable: bool = True


@dataclass(frozen=True)
class QueueSpec:
    """A queue and the bindings it is declared with (more may be added at run time: see `Consumer.bind`)."""

    name: str
    durable: bool = False
    exclusive: bool = False
    auto_delete: bool = False
    # x-arguments (dead-lettering, TTL ...): part of the queue's identity on the broker.
    arguments: Mapping[str, Any] | None = field(default=None, hash=False)
    bindings: tuple[tuple[ExchangeSpec, str], ...] = ()


# -- exchanges --------------------------------------------------------------------------------------------------

EVENTS = ExchangeSpec("tributary.events")
SAMPLES = ExchangeSpec("tributary.samples")
CONTROL = ExchangeSpec("tributary.control")
# Messages a consumer can never use, with their reason in headers (see deadletters.py); the routing key names
# the queue they came from.
DEAD = ExchangeSpec("tributary.dead")
EXCHANGES = (EVENTS, SAMPLES, CONTROL, DEAD)
# What a stream instance queue may be bound to.
STREAM_EXCHANGES = (EVENTS, SAMPLES, CONTROL)

# -- routing keys ------------------------------------------------------------------------------------------------

ALL = "#"
UNITOP_PREFIX = "unitop."
DEMAND_PREFIX = "demand."
SOURCE_PREFIX = "source."


def event_key(topic: str, subject: str | None) -> str:
    """On EVENTS: `<topic>.<subject>`, or `<topic>` alone (`CloudEvent.routing_key`)."""
    return routing_key(topic, subject)


def sample_key(source: str, sid: str) -> str:
    """On SAMPLES: one subscription's batches, `<source>.<sid>`."""
    return f"{source}.{sid}"


def demand_key(source: str) -> str:
    """On CONTROL: demand heartbeats for a source."""
    return f"{DEMAND_PREFIX}{source}"


def source_key(source: str) -> str:
    """On CONTROL: an ingest instance's announcement for a source."""
    return f"{SOURCE_PREFIX}{source}"


def unitop_key(name: str) -> str:
    """On CONTROL: changes of one unitop."""
    return f"{UNITOP_PREFIX}{name}"


def is_unitop_key(key: str) -> bool:
    return key.startswith(UNITOP_PREFIX)


# -- queues ------------------------------------------------------------------------------------------------------

# Every dead letter, kept until the hub records it for admins.
DEADLETTERS = QueueSpec("tributary.deadletters", durable=True, bindings=((DEAD, ALL),))
# The hub recorders' queues: declared by every hub process so nothing confirmed is dropped while none runs.
HUB_RECORDER_EVENTS = QueueSpec("tributary.hub.recorder.events", durable=True, bindings=((EVENTS, ALL),))
HUB_RECORDER_SAMPLES = QueueSpec("tributary.hub.recorder.samples", durable=True, bindings=((SAMPLES, ALL),))
# What a hub process declares at start-up (the exchanges come with the bindings).
HUB_RECORDER_TOPOLOGY = (DEADLETTERS, HUB_RECORDER_EVENTS, HUB_RECORDER_SAMPLES)
# Source announcements, for the hub's registry of who serves what.
HUB_SOURCES = QueueSpec("tributary.hub.sources", durable=True, bindings=((CONTROL, source_key(ALL)),))
# The hub's RPC server (requests expire there when no hub takes them in time).
RPC_HUB = QueueSpec("tributary.rpc.hub")


def source_rpc_queue(source: str) -> QueueSpec:
    """Browsing one source: every ingest instance serving it consumes it, gone with the last of them."""
    return QueueSpec(f"tributary.rpc.source.{source}", auto_delete=True)


def stream_instance_queue(instance_id: str) -> QueueSpec:
    """A stream instance's own queue; its bindings follow what its clients want."""
    return QueueSpec(f"tributary.stream.{instance_id}", exclusive=True, auto_delete=True)


def ingest_instance_queue(instance_id: str, sources: tuple[str, ...] = ()) -> QueueSpec:
    """An ingest instance's control queue: demand for, and peers' announcements of, the sources it serves."""
    bindings = tuple((CONTROL, key) for s in sources for key in (demand_key(s), source_key(s)))
    return QueueSpec(f"tributary.ingest.{instance_id}", exclusive=True, auto_delete=True, bindings=bindings)


# -- declaring (aio-pika) ----------------------------------------------------------------------------------------


async def declare_exchange(channel: AbstractChannel, spec: ExchangeSpec) -> AbstractExchange:
    return await channel.declare_exchange(spec.name, spec.type, durable=spec.durable)


async def declare_queue(channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
    """The queue, then each exchange it is bound to, then its bindings (in the order given)."""
    queue = await channel.declare_queue(
        spec.name,
        durable=spec.durable,
        exclusive=spec.exclusive,
        auto_delete=spec.auto_delete,
        arguments=dict(spec.arguments) if spec.arguments else None,
    )
    exchanges: dict[str, AbstractExchange] = {}
    for exchange, key in spec.bindings:
        if exchange.name not in exchanges:
            exchanges[exchange.name] = await declare_exchange(channel, exchange)
        await queue.bind(exchanges[exchange.name], routing_key=key)
    return queue


async def declare(channel: AbstractChannel, *specs: ExchangeSpec | QueueSpec) -> None:
    """Exchanges and queues (with their bindings), in the order given."""
    for spec in specs:
        if isinstance(spec, ExchangeSpec):
            await declare_exchange(channel, spec)
        else:
            await declare_queue(channel, spec)
