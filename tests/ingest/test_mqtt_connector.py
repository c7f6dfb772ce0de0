"""The mqtt source against the real Mosquitto: JSON payloads with a pointer, plain numeric payloads."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from tests.ingest.helpers import engine, make_settings, sub
from tests.support import platform
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_ingest.connectors.mqtt import MqttSource


@pytest.fixture
async def mqtt() -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", platform.MQTT_PORT, identifier=f"test-{uuid.uuid4().hex[:8]}") as client:
        yield client


async def test_json_pointer_and_plain_payloads(
    mqtt: aiomqtt.Client, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    base = f"tributary-test/{uuid.uuid4().hex}"
    as_json = sub("mqtt", {"host": "127.0.0.1", "port": platform.MQTT_PORT, "topic": f"{base}/json", "pointer": "/m/v"})
    plain = sub(
        "mqtt", {"host": "127.0.0.1", "port": platform.MQTT_PORT, "topic": f"{base}/+/plain", "payload": "plain"}
    )
    async with engine(make_settings(amqp_url, cache_namespace, http_allow=["127.0.0.1"]), {"mqtt": MqttSource}) as e:
        amqp_bus.demand("mqtt", [as_json, plain])
        await eventually(lambda: len(e.status()["sources"]["mqtt"]["leases"]) == 2, what="both leases")

        # QoS 0 messages sent before the connector subscribed are lost: keep publishing until values arrive.
        async def publish_until(check: object, make: object, what: str) -> None:
            i = 0
            while not check():  # type: ignore[operator]
                await make(i)  # type: ignore[operator]
                i += 1
                await asyncio.sleep(0.05)
                assert i < 400, f"no {what} after {i} messages"

        async def json_msg(i: int) -> None:
            await mqtt.publish(f"{base}/json", json.dumps({"m": {"v": i, "unit": "C"}}))

        await publish_until(lambda: len(amqp_bus.values(as_json.sid)) >= 3, json_msg, "JSON values")
        # A payload that is not JSON, and one without the field: skipped, the subscription keeps running.
        await mqtt.publish(f"{base}/json", b"not json")
        await mqtt.publish(f"{base}/json", json.dumps({"other": 1}))
        await mqtt.publish(f"{base}/json", json.dumps({"m": {"v": 1000}}))
        await eventually(lambda: amqp_bus.values(as_json.sid)[-1][1] == 1000, what="the value after bad payloads")
        values = [v for _, v in amqp_bus.values(as_json.sid)]
        assert all(isinstance(v, int) for v in values) and values == sorted(values)

        async def plain_msg(i: int) -> None:
            await mqtt.publish(f"{base}/dev{i % 2}/plain", f"{i}.5")

        await publish_until(lambda: len(amqp_bus.values(plain.sid)) >= 3, plain_msg, "plain values")
        assert all(isinstance(v, float) and v % 1 == 0.5 for _, v in amqp_bus.values(plain.sid))
        assert e.status()["sources"]["mqtt"]["failing"] == {}
        metrics = e.metrics.registry.get_sample_value(
            "tributary_ingest_errors_total", {"source": "mqtt", "kind": "data"}
        )
        assert metrics is not None and metrics >= 2
    amqp_bus.assert_strictly_increasing()


async def test_unreachable_broker_is_retried(amqp_url: str, cache_namespace: str, amqp_bus: Bus) -> None:
    dead = sub("mqtt", {"host": "127.0.0.1", "port": platform.free_port(), "topic": "x"})
    settings = make_settings(amqp_url, cache_namespace, http_allow=["127.0.0.1"], backoff_min_s=0.1, backoff_max_s=0.4)
    async with engine(settings, {"mqtt": MqttSource}) as e:
        amqp_bus.demand("mqtt", [dead])

        def failures() -> float:
            v = e.metrics.registry.get_sample_value(
                "tributary_ingest_errors_total", {"source": "mqtt", "kind": "connector"}
            )
            return v or 0.0

        await eventually(lambda: failures() >= 3, what="three failed connection attempts")
        assert dead.sid in e.status()["sources"]["mqtt"]["leases"]  # the lease is kept while retrying
