"""The mqtt source for real deployments, against a Mosquitto started by the test with TLS (client certificates
required) and a password file: certificates and credentials (right and wrong), server name verification, one
connection shared by every subscription, QoS 1, Sparkplug B births and data decoded per metric, browsing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pysparkplug as spb
import pytest

from tests.ingest.helpers import engine, make_settings, sub
from tests.ingest.mosquitto_tls import PASSWORD, SERVER_NAME, USER, Broker, mosquitto, publish_until
from tests.support.bus import Bus
from tests.support.certs import TestCA
from tests.support.polling import eventually
from tributary_common import rpc_contracts as rc
from tributary_common.rpc import RpcError
from tributary_ingest.browsing import Browser
from tributary_ingest.connectors.mqtt import MqttSource
from tributary_ingest.secret_store import SecretStore


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with mosquitto(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture
def secrets(tmp_path: Path, broker: Broker) -> Path:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "mqtt-key").write_bytes(broker.client.key)
    (folder / "mqtt-password").write_text(PASSWORD)
    (folder / "wrong-password").write_text("not-the-password")
    return folder


def connection(broker: Broker, **kw: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": broker.port,
        "tls": True,
        "server_name": SERVER_NAME,
        "ca_file": "ca.pem",
        "client_certificate": broker.client.cert.decode(),
        "client_private_key": {"secret": "mqtt-key"},
        "username": USER,
        "password": {"secret": "mqtt-password"},
        **kw,
    }


def settings(amqp_url: str, namespace: str, broker: Broker, secrets: Path) -> Any:
    return make_settings(
        amqp_url,
        namespace,
        http_allow=["127.0.0.1"],
        secrets_dir=secrets,
        mqtt_tls_dir=broker.folder,
        backoff_min_s=0.5,
        backoff_max_s=1.0,
    )


def values(bus: Bus, sid: str) -> list[Any]:
    return [v for _, v in bus.values(sid)]


async def test_tls_client_certificate_password_one_connection_qos1(
    broker: Broker, secrets: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    base = f"plant/{uuid.uuid4().hex[:8]}"
    subs = [sub("mqtt", {**connection(broker), "topic": f"{base}/line{i}", "pointer": "/v"}) for i in range(4)]
    subs.append(sub("mqtt", {**connection(broker), "topic": f"{base}/+/plain", "payload": "plain"}))
    wrong_ca = sub(
        "mqtt", {**connection(broker, ca_file=None, ca_certificate=TestCA("Other CA").pem.decode()), "topic": base}
    )
    wrong_password = sub("mqtt", {**connection(broker, password={"secret": "wrong-password"}), "topic": base})
    wrong_name = sub("mqtt", {**connection(broker, server_name="other.test"), "topic": base})
    bad = [wrong_ca, wrong_password, wrong_name]
    before = broker.connections("tributary-")
    async with engine(settings(amqp_url, cache_namespace, broker, secrets), {"mqtt": MqttSource}) as e:
        amqp_bus.demand("mqtt", [*subs, *bad])
        async with broker.publisher() as pub:

            async def publish(i: int) -> None:
                for n in range(4):
                    await pub.publish(f"{base}/line{n}", json.dumps({"v": i * 10 + n}), qos=1)
                await pub.publish(f"{base}/dev/plain", f"{i}.5", qos=1)

            await publish_until(lambda: all(len(values(amqp_bus, s.sid)) >= 3 for s in subs), publish, "values")

        def refused() -> dict[str, Any] | None:
            f: dict[str, Any] = e.status()["sources"]["mqtt"]["failing"]
            return f if all(s.sid in f for s in bad) else None

        failing = await eventually(refused, what="the wrong CA, password and server name refused")
        assert not any(s.sid in failing for s in subs)
        text = json.dumps(e.status())
        assert PASSWORD not in text and "not-the-password" not in text and "PRIVATE KEY" not in text
        for n in range(4):
            assert all(v % 10 == n for v in values(amqp_bus, subs[n].sid))
        # Five subscriptions on one broker with one set of credentials: one connection (the refused ones never
        # got a CONNACK), each topic filter subscribed with QoS 1.
        assert broker.connections("tributary-") - before == 1
        assert len(e.runtimes["mqtt"].connector.links) == 1  # type: ignore[attr-defined]
        assert broker.subscribed_qos(f"{base}/line0") == [1]
        assert values(amqp_bus, wrong_ca.sid) == [] and values(amqp_bus, wrong_password.sid) == []
    amqp_bus.assert_strictly_increasing()


async def test_a_broker_restart_reconnects_every_sid_on_one_new_connection(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    with mosquitto(tmp_path / "own-broker") as b:
        folder = tmp_path / "secrets"
        folder.mkdir()
        (folder / "mqtt-key").write_bytes(b.client.key)
        (folder / "mqtt-password").write_text(PASSWORD)
        subs = [sub("mqtt", {**connection(b), "topic": f"r/{n}", "payload": "plain"}) for n in range(2)]
        async with engine(settings(amqp_url, cache_namespace, b, folder), {"mqtt": MqttSource}):
            amqp_bus.demand("mqtt", subs)

            async def publish_all(i: int) -> None:
                async with b.publisher() as pub:
                    for n in range(2):
                        await pub.publish(f"r/{n}", str(i), qos=1)

            def each(k: int) -> bool:
                return all(len(values(amqp_bus, s.sid)) >= k for s in subs)

            await publish_until(lambda: each(2), publish_all, "values before the restart", every_s=0.2)
            assert b.connections("tributary-") == 1
            b.stop()  # the broker goes away: every sid on the connection fails, then comes back after backoff
            seen = {s.sid: len(values(amqp_bus, s.sid)) for s in subs}
            b.start()
            await publish_until(
                lambda: all(len(values(amqp_bus, s.sid)) > seen[s.sid] for s in subs),
                publish_all,
                "values after the restart",
                every_s=0.2,
            )
            assert b.connections("tributary-") == 2  # one new shared connection, not one per sid
    amqp_bus.assert_strictly_increasing()


def _birth(kind: type[Any], t: int) -> bytes:
    metrics = [
        spb.Metric(timestamp=t, name="Temperature", datatype=spb.DataType.INT16, value=-40, alias=1),
        spb.Metric(timestamp=t, name="Running", datatype=spb.DataType.BOOLEAN, value=True, alias=2),
        spb.Metric(timestamp=t, name="Speed", datatype=spb.DataType.DOUBLE, value=0.5, alias=3),
    ]
    return bytes(kind(timestamp=t, seq=0, metrics=metrics).encode(include_dtypes=True))


def _data(kind: type[Any], t: int, i: int) -> bytes:
    # By alias, without names or datatypes (what pysparkplug 0.3.0 writes): the births tell what they are.
    metrics = [
        spb.Metric(timestamp=t, name=None, alias=1, datatype=spb.DataType.INT16, value=-i),
        spb.Metric(timestamp=t, name=None, alias=3, datatype=spb.DataType.DOUBLE, value=i + 0.25),
    ]
    return bytes(kind(timestamp=t, seq=i % 256, metrics=metrics).encode())


async def test_sparkplug_births_and_data_per_metric(
    broker: Broker, secrets: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    group = f"G{uuid.uuid4().hex[:6]}"
    node = f"spBv1.0/{group}/+/Edge1"
    temperature = sub("mqtt", {**connection(broker), "topic": node, "payload": "sparkplug", "metric": "Temperature"})
    running = sub("mqtt", {**connection(broker), "topic": node, "payload": "sparkplug", "metric": "Running"})
    speed = sub("mqtt", {**connection(broker), "topic": f"{node}/Pump", "payload": "sparkplug", "metric": "Speed"})
    async with engine(settings(amqp_url, cache_namespace, broker, secrets), {"mqtt": MqttSource}) as e:
        amqp_bus.demand("mqtt", [temperature, running, speed])
        await eventually(lambda: len(e.status()["sources"]["mqtt"]["leases"]) == 3, what="the leases")
        async with broker.publisher() as pub:

            async def publish(i: int) -> None:
                t = int(time.time() * 1000)
                if i % 5 == 0:  # a rebirth now and then: the connector may have subscribed after the first one
                    await pub.publish(f"spBv1.0/{group}/NBIRTH/Edge1", _birth(spb.NBirth, t), qos=1)
                    await pub.publish(f"spBv1.0/{group}/DBIRTH/Edge1/Pump", _birth(spb.DBirth, t), qos=1)
                await pub.publish(f"spBv1.0/{group}/NDATA/Edge1", _data(spb.NData, t + 1, i + 1), qos=1)
                await pub.publish(f"spBv1.0/{group}/DDATA/Edge1/Pump", _data(spb.DData, t + 1, i + 1), qos=1)
                await pub.publish(f"spBv1.0/{group}/NDATA/Edge1", b"\xff\xff not protobuf", qos=1)

            await publish_until(
                lambda: len(values(amqp_bus, temperature.sid)) >= 6 and len(values(amqp_bus, speed.sid)) >= 6,
                publish,
                "Sparkplug values",
            )
    temps = values(amqp_bus, temperature.sid)
    assert -40 in temps and any(v < 0 and v != -40 for v in temps)  # signed INT16 from the birth's datatype
    assert all(isinstance(v, bool) and v for v in values(amqp_bus, running.sid)) and values(amqp_bus, running.sid)
    speeds = values(amqp_bus, speed.sid)
    assert 0.5 in speeds and any(v % 1 == 0.25 for v in speeds)
    amqp_bus.assert_strictly_increasing()


async def test_browse_topics_and_sparkplug_metrics(broker: Broker, secrets: Path) -> None:
    s = make_settings(
        "amqp://unused", "unused", http_allow=["127.0.0.1"], secrets_dir=secrets, mqtt_tls_dir=broker.folder
    )
    connector = MqttSource.configure(s)(_NoSink())
    browser = Browser("mqtt", connector, SecretStore(secrets), "test", 10.0)
    base = f"browse/{uuid.uuid4().hex[:8]}"
    group = f"B{uuid.uuid4().hex[:6]}"
    async with broker.publisher() as pub:
        for name in ("a", "b/c"):
            await pub.publish(f"{base}/{name}", b"1", qos=1, retain=True)
        t = int(time.time() * 1000)
        await pub.publish(f"spBv1.0/{group}/NBIRTH/Edge9", _birth(spb.NBirth, t), qos=1, retain=True)
    params = {**connection(broker), "listen_s": 1.0}
    topics = rc.BrowseResult.model_validate(await browser.browse({"path": f"{base}/#", "params": params}))
    assert {i.name for i in topics.items} == {f"{base}/a", f"{base}/b/c"}
    assert topics.items[0].params is not None and topics.items[0].params["topic"] == f"{base}/a"
    assert topics.items[0].params["password"] == {"secret": "mqtt-password"}  # references, never values
    assert "listen_s" not in topics.items[0].params  # a subscription's params: what only browsing takes is left out
    metrics = await browser.browse({"path": f"spBv1.0/{group}/#", "params": params})
    assert {i.name for i in metrics.items} == {"Temperature", "Running", "Speed"}
    item = next(i for i in metrics.items if i.name == "Speed")
    assert item.params is not None
    assert (item.params["topic"], item.params["metric"]) == (f"spBv1.0/{group}/+/Edge9", "Speed")
    # A CA file outside TRIBUTARY_MQTT_TLS_DIR is refused before any connection.
    with pytest.raises(RpcError) as outside:
        await browser.browse({"params": {**params, "ca_file": "../../../etc/ssl/certs/ca-certificates.crt"}})
    assert outside.value.code == "refused" and "outside" in outside.value.message
    (broker.folder / ".ca.pem").write_bytes(broker.ca.pem)
    with pytest.raises(RpcError) as hidden:
        await browser.browse({"params": {**params, "ca_file": ".ca.pem"}})
    assert hidden.value.code == "refused" and "hidden" in hidden.value.message
    with pytest.raises(RpcError) as hostile:
        await browser.browse({"path": "a/#/b", "params": params})
    assert hostile.value.code == "browse_failed"
    # Clean the retained messages up.
    async with broker.publisher() as pub:
        for topic in (f"{base}/a", f"{base}/b/c", f"spBv1.0/{group}/NBIRTH/Edge9"):
            await pub.publish(topic, b"", qos=1, retain=True)


class _NoSink:
    def emit(self, *a: Any, **k: Any) -> None: ...
    def emit_many(self, *a: Any, **k: Any) -> None: ...
    async def room(self, sid: str) -> None: ...
    def warn(self, sid: str, message: str) -> None: ...
    def fail(self, sid: str, error: BaseException) -> None: ...
