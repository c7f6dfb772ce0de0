"""One tag written two ways is one subscription (issue 11): the hub brings params to their canonical form (numbers
by the schema's type, defaults left out, secret references kept) before it hashes them, so the variants get one
sid, ingest takes one lease and one stream of samples flows. Real hub and ingest processes.

Failed on the code before: `"port": 1883` spelled out, `0.0` for an int and `20` for a float each got their own
sid, and ingest read the simulator tag twice (two leases, two routing keys).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pymongo
import pytest
from pydantic import BaseModel

from tests.support import platform
from tests.support.stack import Stack, run_stack
from tributary_common.amqp import SAMPLES
from tributary_common.canonical import canonical_params, canonical_sid
from tributary_common.sid import compute_sid
from tributary_ingest.connectors.mqtt import MqttParams
from tributary_ingest.connectors.simulator import SimulatorParams

pytestmark = pytest.mark.timeout(180)

SIM_SHORT: dict[str, Any] = {"signal": "sine", "rate_hz": 20}
SIM_LONG: dict[str, Any] = {
    "signal": "sine",
    "rate_hz": 20.0,
    "period_s": 60,
    "seed": 0.0,
    "amplitude": 1,
    "phase": -0.0,
}
MQTT_SHORT: dict[str, Any] = {"host": "127.0.0.1", "topic": "tributary-tests/canonical/+"}
MQTT_LONG: dict[str, Any] = {
    **MQTT_SHORT,
    "port": 1883,
    "qos": 1.0,  # the default (QoS 1 since the mqtt source shares one connection per broker)
    "payload": "json",
    "pointer": "",
    "time_pointer": None,
}


@pytest.fixture
def stack(tmp_path: Path, services: None) -> Iterator[Stack]:
    ingest = {"TRIBUTARY_ENABLED_SOURCES": "simulator,mqtt", "TRIBUTARY_LEASE_TTL_S": "3"}
    env = {"TRIBUTARY_HTTP_ALLOW": "127.0.0.1"}  # the mqtt item's broker is on loopback
    with run_stack(tmp_path / "logs", ("hub", "ingest"), env=env, per_service={"ingest": ingest}) as s:
        yield s


def unitop(name: str, sim: dict[str, Any], mqtt: dict[str, Any]) -> dict[str, Any]:
    items = {"flow": {"source": "simulator", "params": sim}, "level": {"source": "mqtt", "params": mqtt}}
    return {"name": name, "record": True, "items": items}


async def test_two_spellings_of_one_tag_are_one_sid_one_lease_one_stream(stack: Stack) -> None:
    hub = httpx.AsyncClient(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    ingest = httpx.AsyncClient(base_url=stack.url("ingest"), timeout=10)
    for _ in range(120):
        if len((await hub.get("/sources")).json()["items"]) >= 2:
            break
        await asyncio.sleep(0.25)
    connection = await aio_pika.connect_robust(platform.amqp_url(stack.vhost))
    channel = await connection.channel()
    samples = await channel.declare_exchange(SAMPLES.name, "topic", durable=True)
    tap = await channel.declare_queue(exclusive=True, auto_delete=True)
    await tap.bind(samples, routing_key="simulator.#")

    r = await hub.post("/unitops", json=unitop("short", SIM_SHORT, MQTT_SHORT))
    assert r.status_code == 201, r.text
    r = await hub.post("/unitops", json=unitop("long", SIM_LONG, MQTT_LONG))
    assert r.status_code == 201, r.text
    short, long = (await hub.get("/unitops/short")).json(), (await hub.get("/unitops/long")).json()
    for item in ("flow", "level"):
        assert short["items"][item]["sid"] == long["items"][item]["sid"], item
        assert short["items"][item]["params"] == long["items"][item]["params"], item
    # The stored form is the canonical one: floats where the model has floats, defaults left out.
    assert long["items"]["flow"]["params"] == {"signal": "sine", "rate_hz": 20.0}
    assert json.dumps(long["items"]["flow"]["params"]) == '{"signal": "sine", "rate_hz": 20.0}'
    assert long["items"]["level"]["params"] == MQTT_SHORT
    sim_sid, mqtt_sid = short["items"]["flow"]["sid"], short["items"]["level"]["sid"]
    # Anyone holding the announced schema gets the same sid from either spelling.
    sources = {s["name"]: s["subscription_schema"] for s in (await hub.get("/sources")).json()["items"]}
    assert canonical_sid("simulator", sources["simulator"], SIM_LONG) == sim_sid
    assert canonical_sid("mqtt", sources["mqtt"], MQTT_LONG) == mqtt_sid

    async def leases() -> dict[str, dict[str, str]]:
        src = (await ingest.get("/status")).json()["sources"]
        return {name: src[name]["leases"] for name in ("simulator", "mqtt")}

    for _ in range(120):
        held = await leases()
        if held["simulator"] and held["mqtt"]:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(2.0)  # demand heartbeats for both unitops keep coming; a second lease would show now
    held = await leases()
    assert set(held["simulator"]) == {sim_sid} and set(held["mqtt"]) == {mqtt_sid}, held
    status = (await ingest.get("/status")).json()["sources"]["simulator"]
    assert status["demanded"] == 1 and not status["rejected"], status

    # One stream of samples: every simulator batch on the wire carries the one sid, and the timestamps never repeat.
    keys: set[str] = set()
    times: list[str] = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        message = await tap.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        keys.add(message.routing_key or "")
        times += [s["t"] for s in json.loads(message.body)["samples"]]
    assert keys == {f"simulator.{sim_sid}"}
    assert len(times) > 10 and len(times) == len(set(times))
    await connection.close()
    await ingest.aclose()
    await hub.aclose()


async def test_stored_sids_are_kept_and_a_rewrite_makes_them_canonical(stack: Stack) -> None:
    """A unitop stored by an older version keeps its sid (its recorded history stays attached) until it is next
    written, when it gets the canonical one."""
    hub = httpx.AsyncClient(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    for _ in range(120):
        if (await hub.get("/sources")).json()["items"]:
            break
        await asyncio.sleep(0.25)
    legacy_sid = compute_sid("simulator", SIM_LONG)
    now = datetime.now(UTC)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(platform.mongodb_url())
    with client:
        doc: dict[str, Any] = {
            "_id": "legacy",
            "items": {"flow": {"source": "simulator", "sid": legacy_sid, "params_json": json.dumps(SIM_LONG)}},
            "meta": {},
            "record": True,
            "created_at": now,
            "updated_at": now,
        }
        client[stack.db]["unitops"].insert_one(doc)
    view = (await hub.get("/unitops/legacy")).json()
    assert view["items"]["flow"]["sid"] == legacy_sid
    # Still read under its stored sid; ingest points out that it is not the canonical one.
    canonical = compute_sid("simulator", {"signal": "sine", "rate_hz": 20.0})
    ingest = httpx.AsyncClient(base_url=stack.url("ingest"), timeout=10)
    for _ in range(120):
        status = (await ingest.get("/status")).json()["sources"]["simulator"]
        if status["noncanonical"]:
            break
        await asyncio.sleep(0.25)
    assert status["noncanonical"] == {legacy_sid: canonical}, status
    await ingest.aclose()
    again = {"name": "legacy", "items": {"flow": {"source": "simulator", "params": SIM_LONG}}}
    r = await hub.put("/unitops/legacy", json=again)
    assert r.status_code == 200, r.text
    assert r.json()["items"]["flow"]["sid"] == canonical
    await hub.aclose()


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"signal": "sine", "seed": 10**30}, "/items/flow/params/seed"),
        ({"signal": "sine", "seed": 1e300}, "/items/flow/params/seed"),
        ({"signal": "sine", "seed": -(2**64)}, "/items/flow/params/seed"),
    ],
)
async def test_numbers_no_store_can_hold_are_a_422_naming_the_field(
    stack: Stack, params: dict[str, Any], loc: str
) -> None:
    hub = httpx.AsyncClient(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=10)
    for _ in range(120):
        if (await hub.get("/sources")).json()["items"]:
            break
        await asyncio.sleep(0.25)
    body = json.dumps({"name": "huge", "items": {"flow": {"source": "simulator", "params": params}}})
    r = await hub.post("/unitops", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert loc in r.text
    await hub.aclose()


def test_the_canonical_form_means_what_the_connector_reads() -> None:
    """Whatever the spelling, the connector's model reads the canonical params as it reads the original."""
    cases: list[tuple[type[BaseModel], list[dict[str, Any]]]] = [
        (SimulatorParams, [SIM_SHORT, SIM_LONG, {"signal": "sine", "rate_hz": 2e1, "step": 0.05}]),
        (MqttParams, [MQTT_SHORT, MQTT_LONG, {**MQTT_SHORT, "keepalive_s": 30.0, "username": None}]),
    ]
    for model, variants in cases:
        schema = model.model_json_schema()
        canonical = [canonical_params(schema, v) for v in variants]
        assert all(c == canonical[0] for c in canonical), canonical
        assert len({compute_sid("x", c) for c in canonical}) == 1
        for v, c in zip(variants, canonical, strict=True):
            assert model.model_validate(c) == model.model_validate(v)
