"""The topology's names are today's literals (queues exist on brokers with their arguments), and declaring a
queue spec against the real broker gives the queue, its exchanges and its bindings."""

from __future__ import annotations

import aio_pika

from tests.support import platform
from tributary_common import rpc_contracts
from tributary_common.amqp import topology as t
from tributary_common.control import Demand, SourceAnnouncement, UnitopChange, control_key
from tributary_common.events import CloudEvent, dataschema_for
from tributary_hub import amqp as hub_amqp
from tributary_hub import broker_wiring as hub_runtime


def test_exchange_names_and_kinds() -> None:
    assert [(x.name, x.type.value, x.durable) for x in t.EXCHANGES] == [
        ("tributary.events", "topic", True),
        ("tributary.samples", "topic", True),
        ("tributary.control", "topic", True),
        ("tributary.dead", "topic", True),
    ]
    assert [x.name for x in t.STREAM_EXCHANGES] == ["tributary.events", "tributary.samples", "tributary.control"]


def test_queue_names_equal_the_services_literals() -> None:
    assert t.HUB_RECORDER_EVENTS.name == hub_amqp.EVENTS_RECORDER_QUEUE == "tributary.hub.recorder.events"
    assert t.HUB_RECORDER_SAMPLES.name == hub_amqp.SAMPLES_RECORDER_QUEUE == "tributary.hub.recorder.samples"
    assert t.HUB_SOURCES.name == hub_runtime.SOURCES_QUEUE == "tributary.hub.sources"
    assert t.DEADLETTERS.name == "tributary.deadletters"
    assert t.RPC_HUB.name == rpc_contracts.HUB_QUEUE == "tributary.rpc.hub"
    assert t.source_rpc_queue("csv").name == rpc_contracts.source_queue("csv") == "tributary.rpc.source.csv"
    assert t.stream_instance_queue("s-1").name == "tributary.stream.s-1"
    assert t.ingest_instance_queue("i-1").name == "tributary.ingest.i-1"


def test_queue_flags_equal_todays_declarations() -> None:
    def flags(q: t.QueueSpec) -> tuple[bool, bool, bool, object]:
        return q.durable, q.exclusive, q.auto_delete, q.arguments

    for durable in (t.DEADLETTERS, t.HUB_RECORDER_EVENTS, t.HUB_RECORDER_SAMPLES, t.HUB_SOURCES):
        assert flags(durable) == (True, False, False, None)
    assert flags(t.RPC_HUB) == (False, False, False, None)
    assert flags(t.source_rpc_queue("x")) == (False, False, True, None)
    assert flags(t.stream_instance_queue("x")) == (False, True, True, None)
    assert flags(t.ingest_instance_queue("x")) == (False, True, True, None)
    assert t.DEADLETTERS.bindings == ((t.DEAD, "#"),)
    assert t.HUB_RECORDER_EVENTS.bindings == ((t.EVENTS, "#"),)
    assert t.HUB_RECORDER_SAMPLES.bindings == ((t.SAMPLES, "#"),)
    assert t.HUB_SOURCES.bindings == ((t.CONTROL, "source.#"),)
    assert t.ingest_instance_queue("x", ("csv", "sim")).bindings == (
        (t.CONTROL, "demand.csv"),
        (t.CONTROL, "source.csv"),
        (t.CONTROL, "demand.sim"),
        (t.CONTROL, "source.sim"),
    )


def test_routing_keys() -> None:
    assert t.demand_key("csv") == "demand.csv"
    assert t.source_key("csv") == "source.csv"
    assert t.unitop_key("press-1") == "unitop.press-1"
    assert t.is_unitop_key("unitop.press-1") and not t.is_unitop_key("source.unitop")
    assert t.sample_key("csv", "abc") == "csv.abc"  # ingest's `f"{source}.{sid}"`, the stream's binding
    event = CloudEvent.model_validate(
        {"id": "e1", "source": "/x", "type": "press", "subject": "a.b", "time": "2026-01-01T00:00:00Z"}
        | {"dataschema": dataschema_for("press", 1), "data": {}}
    )
    assert t.event_key("press", "a.b") == event.routing_key == "press.a.b"
    assert t.event_key("press", None) == "press"


def _queue_info(vhost: str, name: str) -> dict[str, object]:
    info = platform.queue_info(vhost, name)
    assert info is not None, name
    return info


async def test_declaring_the_hub_topology_twice_and_with_todays_declarations(vhost: str, amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await t.declare(channel, *t.EXCHANGES, *t.HUB_RECORDER_TOPOLOGY, t.HUB_SOURCES)
        await t.declare(channel, *t.HUB_RECORDER_TOPOLOGY)  # idempotent
        # Today's hand-written declarations are accepted on the same queues (no PRECONDITION_FAILED).
        for name in (hub_amqp.EVENTS_RECORDER_QUEUE, hub_amqp.SAMPLES_RECORDER_QUEUE, t.DEADLETTERS.name):
            await channel.declare_queue(name, durable=True)
        await hub_amqp.declare_topology(channel)
        assert not channel.is_closed
    finally:
        await connection.close()
    for q in t.HUB_RECORDER_TOPOLOGY:
        info = _queue_info(vhost, q.name)
        assert (info["durable"], info["exclusive"], info["auto_delete"], info["arguments"]) == (True, False, False, {})
    sources = {(b["destination"], b["routing_key"]) for b in platform.bindings(vhost, "tributary.control")}
    assert sources == {("tributary.hub.sources", "source.#")}
    dead = {(b["destination"], b["routing_key"]) for b in platform.bindings(vhost, "tributary.dead")}
    assert dead == {("tributary.deadletters", "#")}


def test_control_messages_know_their_routing_key() -> None:
    now = "2026-01-01T00:00:00Z"
    demand = Demand.model_validate(
        {"source": "csv", "requester": "hub", "subscriptions": [], "ttl_s": 5, "sent_at": now}
    )
    announcement = SourceAnnouncement.model_validate(
        {
            "source": "sim",
            "instance_id": "i",
            "subscription_schema": {},
            "capacity": 1,
            "free": 1,
            "leases": 0,
            "ttl_s": 5,
            "sent_at": now,
        }
    )
    change = UnitopChange.model_validate({"action": "deleted", "name": "press-1", "sent_at": now})
    assert [control_key(m) for m in (demand, announcement, change)] == ["demand.csv", "source.sim", "unitop.press-1"]
