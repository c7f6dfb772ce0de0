"""One way to speak AMQP (aio-pika underneath), composed as topology → connection → consumer/publisher:

    from tributary_common.amqp import (
        CONTROL, EVENTS, ConfirmedPublisher, Consumer, connect, demand_key, ingest_instance_queue,
    )

    connection = await connect(settings.amqp_url, name="ingest")                 # robust: comes back by itself
    publisher = ConfirmedPublisher(window=256, timeout_s=5.0)
    await publisher.start(connection, CONTROL)                                     # confirmed channel
    control = Consumer(ingest_instance_queue(instance_id, sources), on_control, no_ack=True)
    await control.start(connection)                                                # declare, bind, consume
    await publisher.publish(CONTROL, source_key(source), body)                     # returns once confirmed
    ...
    await control.cancel()          # stop taking messages (idempotent), then drain the work in hand
    await control.close(); await publisher.close(); await connection.close()

- `topology`: every exchange, queue (or queue-name builder) and routing key, as data, and `declare*`; which
  queues are quorum queues and why.
- `upgrade`: `ensure_queues` declares durable queues, moving a classic one of an older Tributary in place.
- `connection`: `connect` / `connect_retrying` (with `Backoff`).
- `consumer.Consumer`: its own channel, prefetch, callback or `inbox`, run-time `bind`/`unbind`, `cancel`,
  `close`, `alive()` (for readiness) and `closed()` (for a supervisor that reconnects).
- `publisher.ConfirmedPublisher`: confirms, a bounded window in flight, timeouts, persistent, trace headers.
- `rpc`: `serve_rpc` and `RpcClient`, the aio-pika transport of `tributary_common.rpc` (same wire format).
- `delivery.Delivery`: what a consumer reads of a message, whichever client received it. One exception to
  "aio-pika underneath": the hub's events recorder receives on pika in a thread (`tributary_hub.pika_receiver`,
  a quarter of aio-pika's CPU per message, measured in bench/amqp_consume.py); its deliveries are `Delivery`s too.

Dead letters (`tributary_common.deadletters`) keep their module; control messages give their routing key with
`tributary_common.control.control_key`.
"""

from .connection import connect, connect_retrying, connect_robust
from .consumer import Consumer, OnMessage
from .publisher import ConfirmedPublisher, PublishFailed
from .rpc import RpcClient, serve_rpc
from .topology import (
    ALL,
    CONTROL,
    DEAD,
    DEADLETTERS,
    DELIVERY_LIMIT,
    DURABLE_QUEUES,
    EVENTS,
    EXCHANGES,
    HUB_RECORDER_EVENTS,
    HUB_RECORDER_SAMPLES,
    HUB_RECORDER_TOPOLOGY,
    HUB_SOURCES,
    RPC_HUB,
    SAMPLES,
    STREAM_EXCHANGES,
    ExchangeSpec,
    QueueSpec,
    declare,
    declare_exchange,
    declare_queue,
    demand_key,
    event_key,
    ingest_instance_queue,
    is_unitop_key,
    quorum_queue,
    sample_key,
    source_key,
    source_rpc_queue,
    stream_instance_queue,
    unitop_key,
)
from .upgrade import declare_if_compatible, ensure_queues

__all__ = [
    "ALL",
    "CONTROL",
    "DEAD",
    "DEADLETTERS",
    "DELIVERY_LIMIT",
    "DURABLE_QUEUES",
    "EVENTS",
    "EXCHANGES",
    "HUB_RECORDER_EVENTS",
    "HUB_RECORDER_SAMPLES",
    "HUB_RECORDER_TOPOLOGY",
    "HUB_SOURCES",
    "RPC_HUB",
    "SAMPLES",
    "STREAM_EXCHANGES",
    "ConfirmedPublisher",
    "Consumer",
    "ExchangeSpec",
    "OnMessage",
    "PublishFailed",
    "QueueSpec",
    "RpcClient",
    "connect",
    "connect_retrying",
    "connect_robust",
    "declare",
    "declare_exchange",
    "declare_if_compatible",
    "declare_queue",
    "demand_key",
    "ensure_queues",
    "event_key",
    "ingest_instance_queue",
    "is_unitop_key",
    "quorum_queue",
    "sample_key",
    "serve_rpc",
    "source_key",
    "source_rpc_queue",
    "stream_instance_queue",
    "unitop_key",
]
