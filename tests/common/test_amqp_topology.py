"""The topology's names are today's literals (queues exist on brokers with their arguments), and declaring a
queue spec against the real broker gives the queue, its exchanges and its bindings."""

from __future__ import annotations

import asyncio

import aio_pika

from tests.support import platform
from tributary_common import deadletters, rpc_contracts
from tributary_common.amqp import topology as t
from tributary_common.control import Demand, SourceAnnouncement, UnitopChange, control_key
from tributary_common.events import CloudEvent, dataschema_for
from tributary_hub import amqp as hub_amqp
from tributary_hub import broker_wiring as hub_runtime
from tributary_hub import deadletters as hub_letters


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

    dead_lettered = {
        "x-dead-letter-exchange": "tributary.dead",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    for recorded in (t.HUB_RECORDER_EVENTS, t.HUB_RECORDER_SAMPLES):
        assert flags(recorded) == (
            True,
            False,
            False,
            {"x-queue-type": "quorum", "x-delivery-limit": 20, "x-dead-letter-routing-key": recorded.name}
            | dead_lettered,
        )
    assert flags(t.HUB_SOURCES) == (True, False, False, {"x-queue-type": "quorum", "x-delivery-limit": 20})
    assert flags(t.DEADLETTERS) == (True, False, False, {"x-queue-type": "quorum"})  # the last stop: no limit
    assert (*t.HUB_RECORDER_TOPOLOGY, t.HUB_SOURCES) == t.DURABLE_QUEUES
    assert all(q.quorum for q in t.DURABLE_QUEUES) and not t.RPC_HUB.quorum
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


async def test_declaring_the_hub_topology_twice(vhost: str, amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await t.declare(channel, *t.EXCHANGES, *t.HUB_RECORDER_TOPOLOGY, t.HUB_SOURCES)
        await t.declare(channel, *t.HUB_RECORDER_TOPOLOGY)  # idempotent
        await hub_amqp.declare_topology(channel)
        await hub_amqp.upgrade_topology(connection)  # nothing to upgrade: the same queues
        assert not channel.is_closed
    finally:
        await connection.close()
    for q in (*t.HUB_RECORDER_TOPOLOGY, t.HUB_SOURCES):
        info = _queue_info(vhost, q.name)
        assert (info["durable"], info["exclusive"], info["auto_delete"], info["type"]) == (True, False, False, "quorum")
        assert info["arguments"] == dict(q.arguments or {})
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


async def test_a_message_never_acked_is_dead_lettered_by_the_broker_with_its_queue_and_why(
    vhost: str, amqp_url: str
) -> None:
    """A recorder that crashes on a message again and again: after DELIVERY_LIMIT deliveries the broker sends
    it to tributary.dead (routing key = the queue), and the letter's fields say why and where it came from."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await t.declare(channel, *t.EXCHANGES, *t.HUB_RECORDER_TOPOLOGY)
        events = await channel.get_exchange(t.EVENTS.name)
        await events.publish(aio_pika.Message(b"poison", message_id="p1"), routing_key="press.a")
        queue = await channel.get_queue(t.HUB_RECORDER_EVENTS.name)
        deliveries = 0
        while (message := await queue.get(no_ack=False, fail=False, timeout=5)) is not None:
            deliveries += 1
            await message.nack(requeue=True)
            assert deliveries <= t.DELIVERY_LIMIT + 1
        assert deliveries == t.DELIVERY_LIMIT + 1  # the limit counts redeliveries
        letters = await channel.get_queue(t.DEADLETTERS.name)
        letter = None
        for _ in range(50):
            letter = await letters.get(no_ack=True, fail=False)
            if letter is not None:
                break
            await asyncio.sleep(0.1)
        assert letter is not None
        assert (letter.body, letter.routing_key, letter.exchange) == (
            b"poison",
            t.HUB_RECORDER_EVENTS.name,
            "tributary.dead",
        )
        fields = deadletters.broker_death(dict(letter.headers or {}))
        assert fields[deadletters.REASON] == "delivery_limit"
        assert fields[deadletters.ORIGINAL_EXCHANGE] == t.EVENTS.name
        assert fields[deadletters.ORIGINAL_ROUTING_KEY] == "press.a"
        assert t.HUB_RECORDER_EVENTS.name in fields[deadletters.DETAIL]
        assert fields[deadletters.FIRST_FAILURE] is not None
        # The hub keeps it as a letter like its own ones: why, from which queue, where it had been published.
        doc = hub_letters.letter_document(letter, body_max_bytes=1024)
        assert (doc["reason"], doc["queue"], doc["exchange"], doc["routing_key"]) == (
            "delivery_limit",
            t.HUB_RECORDER_EVENTS.name,
            t.EVENTS.name,
            "press.a",
        )
    finally:
        await connection.close()


def test_broker_death_without_x_death_or_with_a_strange_one() -> None:
    assert deadletters.broker_death({}) == {}
    assert deadletters.broker_death({"x-death": "nonsense"}) == {}
    assert deadletters.broker_death({"x-death": [1]}) == {}
    odd = deadletters.broker_death({"x-death": [{"reason": "Not A Word!", "routing-keys": "x"}]})
    assert odd[deadletters.REASON] == deadletters.UNEXPECTED_ERROR
    assert (odd[deadletters.ORIGINAL_ROUTING_KEY], odd[deadletters.FIRST_FAILURE]) == ("", None)
