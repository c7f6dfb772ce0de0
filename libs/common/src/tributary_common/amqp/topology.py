"""Every exchange, queue and routing key of Tributary on RabbitMQ, defined once, as data.

Names are what the services always declared (deployments, dashboards and alerts know them). Queues live on
brokers with their arguments, and a declare that differs is refused (PRECONDITION_FAILED): a queue that changes
type is moved by `amqp/upgrade.py`, which the hub runs at start.

Queue types, per queue (a cluster loses a classic queue with the node that holds it; a quorum queue is
replicated on a majority of nodes and carries on while one is down):
- `tributary.hub.recorder.events`, `tributary.hub.recorder.samples`: quorum. They hold what was confirmed to
  publishers until the recorders stored it. A message delivered DELIVERY_LIMIT times without an ack (a recorder
  crashing on it again and again) is dead-lettered by the broker to `tributary.dead`, routing key = the queue,
  at least once (`x-dead-letter-strategy`, which needs `x-overflow: reject-publish`); the broker's `x-death`
  header says why (reason `delivery_limit`; see deadletters.py).
- `tributary.deadletters`: quorum, without delivery limit or dead-lettering: it is the last stop, a letter
  dropped after N deliveries would be lost and one dead-lettered to `tributary.dead` would come back to it.
- `tributary.hub.sources`: quorum, so that no hub loses its announcements consumer with a node; a delivery limit
  but no dead-lettering (a rejected announcement is dropped, as before: the next one comes in seconds).
- `tributary.rpc.hub`: classic, not durable. A request is worth nothing after its caller's timeout (it carries
  that as its expiration), and replicating every call to disk would cost each one latency. When its node is
  lost, every hub declares it again on the node it is connected to and consumes it anew (aio-pika's robust
  channel does so after a reconnection, and after the broker cancels a consumer); a call in flight times out
  and its caller retries.
- Per-instance queues (stream, ingest) and a source's RPC queue: classic, exclusive or auto-delete; they go
  with their instance.

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


QUEUE_TYPE = "x-queue-type"


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

    @property
    def quorum(self) -> bool:
        return (self.arguments or {}).get(QUEUE_TYPE) == "quorum"


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

# Deliveries without an ack before the broker dead-letters (or, without dead-lettering, drops) a message: RabbitMQ
# 4's default, made explicit (3.x has no limit).
DELIVERY_LIMIT = 20


def quorum_queue(
    name: str, bindings: tuple[tuple[ExchangeSpec, str], ...], *, delivery_limit: bool = True, dead_letter: bool = True
) -> QueueSpec:
    """A durable quorum queue; `dead_letter`: what exceeds the delivery limit goes to DEAD, keyed by `name`."""
    arguments: dict[str, Any] = {QUEUE_TYPE: "quorum"}
    if delivery_limit:
        arguments["x-delivery-limit"] = DELIVERY_LIMIT
    if dead_letter:
        arguments |= {
            "x-dead-letter-exchange": DEAD.name,
            "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return QueueSpec(name, durable=True, arguments=arguments, bindings=bindings)


# Every dead letter, kept until the hub records it for admins.
DEADLETTERS = quorum_queue("tributary.deadletters", ((DEAD, ALL),), delivery_limit=False, dead_letter=False)
# The hub recorders' queues: declared by every hub process so nothing confirmed is dropped while none runs.
HUB_RECORDER_EVENTS = quorum_queue("tributary.hub.recorder.events", ((EVENTS, ALL),))
HUB_RECORDER_SAMPLES = quorum_queue("tributary.hub.recorder.samples", ((SAMPLES, ALL),))
# What a hub process declares at start-up (the exchanges come with the bindings).
HUB_RECORDER_TOPOLOGY = (DEADLETTERS, HUB_RECORDER_EVENTS, HUB_RECORDER_SAMPLES)
# Source announcements, for the hub's registry of who serves what.
HUB_SOURCES = quorum_queue("tributary.hub.sources", ((CONTROL, source_key(ALL)),), dead_letter=False)
# Every durable queue (each a quorum queue), in the order the hub declares (and upgrades) them.
DURABLE_QUEUES = (*HUB_RECORDER_TOPOLOGY, HUB_SOURCES)
# The hub's RPC server (requests expire there when no hub takes them in time).
RPC_HUB = QueueSpec("tributary.rpc.hub")


def upgrade_holding(spec: QueueSpec) -> QueueSpec:
    """Where `spec`'s messages wait while its classic queue is replaced (amqp/upgrade.py): same type and bindings."""
    return QueueSpec(f"{spec.name}.upgrade", durable=spec.durable, arguments=spec.arguments, bindings=spec.bindings)


def upgrade_mover(target: str) -> ExchangeSpec:
    """The exchange that moves messages into `target` keeping their routing keys (bound to `target` alone)."""
    return ExchangeSpec(f"tributary.upgrade.{target}", aio_pika.ExchangeType.FANOUT, durable=False)


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
