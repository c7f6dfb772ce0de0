"""The opcua source against an asyncua server started by the test: subscriptions, quality, deadband, a server
restart (reconnect and re-subscription), Basic256Sha256 with client certificates and a user, history backfill
after a lease changes hands, browsing."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from asyncua.common.node import Node

from tests.ingest.helpers import engine, make_settings, sub
from tests.ingest.opcua_server import URI, plant
from tests.support import platform
from tests.support.bus import Bus
from tests.support.certs import TestCA
from tests.support.polling import eventually
from tributary_common import rpc_contracts as rc
from tributary_common.rpc import RpcError
from tributary_ingest.browsing import Browser
from tributary_ingest.connectors.opcua import OpcuaSource
from tributary_ingest.secret_store import SecretStore

NS = "ns=1;s=Line1."


def settings(amqp_url: str, namespace: str, **kw: Any) -> Any:
    return make_settings(amqp_url, namespace, http_allow=["127.0.0.1"], **kw)


def values(bus: Bus, sid: str) -> list[Any]:
    return [v for _, v in bus.values(sid)]


def samples(bus: Bus, sid: str) -> list[Any]:
    return [s for r in bus.batches if r.batch.sid == sid for s in r.batch.samples]


async def test_values_quality_deadband_and_server_restart(amqp_url: str, cache_namespace: str, amqp_bus: Bus) -> None:
    port = platform.free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/tributary/"
    base = {"endpoint": endpoint, "publishing_interval_ms": 100, "sampling_interval_ms": 0, "queue_size": 20}
    counter = sub("opcua", {**base, "node": NS + "Counter"})
    sensor = sub("opcua", {**base, "node": NS + "Sensor"})
    noisy = sub("opcua", {**base, "node": NS + "Noisy", "deadband": 5})
    async with engine(settings(amqp_url, cache_namespace), {"opcua": OpcuaSource}) as e:
        async with plant(port):
            amqp_bus.demand("opcua", [counter, sensor, noisy])
            await eventually(lambda: len(values(amqp_bus, counter.sid)) >= 10, what="counter values")
            got = values(amqp_bus, counter.sid)
            assert got == list(range(got[0], got[0] + len(got)))  # every change, in order
            await eventually(
                lambda: any(s.q == "BadSensorFailure" and s.v is None for s in samples(amqp_bus, sensor.sid)),
                what="a Bad sample",
            )
            good = [s for s in samples(amqp_bus, sensor.sid) if s.q is None]
            assert good and all(isinstance(s.v, float) for s in good)
            await eventually(lambda: len(values(amqp_bus, noisy.sid)) >= 2, what="deadband steps")
            steps = values(amqp_bus, noisy.sid)
            assert all(abs(b - a) >= 5 for a, b in itertools.pairwise(steps)), steps
            assert len(e.runtimes["opcua"].connector.links) == 1  # type: ignore[attr-defined]  # one session
        # The server restarts (a new process would look the same): the engine reconnects and subscribes again.
        async with plant(port, start=100_000):
            await eventually(
                lambda: any(v > 100_000 for v in values(amqp_bus, counter.sid)), timeout=40, what="values again"
            )
    amqp_bus.assert_strictly_increasing()


async def test_basic256sha256_with_client_certificate_and_user(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    ca = TestCA()
    server_cert = ca.issue("opcua-server", dns=("localhost",), ips=("127.0.0.1",), uri=URI, self_signed=True)
    client = ca.issue("tributary-ingest", uri="urn:tributary:ingest", self_signed=True)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "opcua-key").write_bytes(client.key)
    (secrets / "opcua-password").write_text("s3cret")
    port = platform.free_port()
    async with plant(port, cert=server_cert, users={"operator": "s3cret"}, secure_only=True) as p:
        base = {
            "endpoint": p.endpoint,
            "node": NS + "Counter",
            "publishing_interval_ms": 100,
            "security_policy": "Basic256Sha256",
            "client_certificate": client.cert.decode(),
            "client_private_key": {"secret": "opcua-key"},
            "username": "operator",
            "password": {"secret": "opcua-password"},
        }
        signed = sub("opcua", {**base, "security_mode": "Sign"})
        encrypted = sub("opcua", {**base, "security_mode": "SignAndEncrypt"})
        wrong = sub("opcua", {**base, "username": "intruder"})
        plain = sub("opcua", {"endpoint": p.endpoint, "node": NS + "Counter"})
        s = settings(amqp_url, cache_namespace, secrets_dir=secrets, backoff_min_s=0.5, backoff_max_s=1.0)
        async with engine(s, {"opcua": OpcuaSource}) as e:
            amqp_bus.demand("opcua", [signed, encrypted, wrong, plain])
            await eventually(lambda: len(values(amqp_bus, signed.sid)) >= 3, what="values over Sign")
            await eventually(lambda: len(values(amqp_bus, encrypted.sid)) >= 3, what="values over SignAndEncrypt")
            failing = await eventually(
                lambda: (f := e.status()["sources"]["opcua"]["failing"]).get(wrong.sid) and f.get(plain.sid) and f,
                what="the wrong user and the unsecured session refused",
            )
            assert "s3cret" not in str(e.status())
            del failing
    assert values(amqp_bus, wrong.sid) == [] and values(amqp_bus, plain.sid) == []


async def test_history_backfill_after_the_lease_changes_hands(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in pages of 7 values (10,000 by default): the gap of 20+ values takes several HistoryReads, each
    starting after the last time of the one before, and the seams between them lose and repeat nothing."""
    monkeypatch.setattr(OpcuaSource, "history_page", 7)
    pages: list[tuple[int, int]] = []  # (values asked for, values answered) per HistoryRead
    read = Node.read_raw_history

    async def counted(self: Node, *args: Any, **kwargs: Any) -> Any:
        values = await read(self, *args, **kwargs)
        pages.append((kwargs["numvalues"], len(values)))
        return values

    monkeypatch.setattr(Node, "read_raw_history", counted)
    port = platform.free_port()
    async with plant(port, history=True) as p:
        counter = sub(
            "opcua",
            {
                "endpoint": p.endpoint,
                "node": NS + "Counter",
                "publishing_interval_ms": 100,
                "sampling_interval_ms": 0,
                "queue_size": 50,
            },
        )
        s = settings(amqp_url, cache_namespace)
        amqp_bus.demand("opcua", [counter])
        async with engine(s, {"opcua": OpcuaSource}):
            await eventually(lambda: len(values(amqp_bus, counter.sid)) >= 5, what="live values")
        first = values(amqp_bus, counter.sid)
        # Nobody reads for a while (the instance left, handing its lease and watermark back): the server goes on.
        await eventually(lambda: p.written[-1][1] >= first[-1] + 20, what="the server writing on")
        async with engine(s, {"opcua": OpcuaSource}):
            await eventually(lambda: values(amqp_bus, counter.sid)[-1] >= first[-1] + 40, what="backfill, then live")
    got = values(amqp_bus, counter.sid)
    # Every value from the first received on, once: the gap was read from history and the seam has no duplicate.
    assert got == list(range(got[0], got[-1] + 1))
    assert len(pages) >= 3 and all(asked == 7 and answered <= 7 for asked, answered in pages), pages
    amqp_bus.assert_strictly_increasing()


async def test_browse_nodes(tmp_path: Path) -> None:
    port = platform.free_port()
    async with plant(port) as p:
        connector = OpcuaSource.configure(settings("amqp://unused", "unused"))(_NoSink())
        browser = Browser("opcua", connector, SecretStore(None), "test", 10.0)
        top = rc.BrowseResult.model_validate(await browser.browse({"params": {"endpoint": p.endpoint}}))
        line = next(i for i in top.items if i.name == "Line1")
        assert line.has_children and line.params is None
        under = await browser.browse({"path": line.path, "params": {"endpoint": p.endpoint}})
        names = {i.name: i for i in under.items}
        assert {"Counter", "Level", "Noisy", "Sensor"} <= set(names)
        assert names["Counter"].params == {"endpoint": p.endpoint, "node": NS + "Counter"}
        with pytest.raises(RpcError) as refused:
            await browser.browse({"params": {"endpoint": "opc.tcp://169.254.169.254:4840/"}})
        assert refused.value.code == "refused" and "link-local" in refused.value.message


class _NoSink:
    def emit(self, *a: Any, **k: Any) -> None: ...
    def emit_many(self, *a: Any, **k: Any) -> None: ...
    async def room(self, sid: str) -> None: ...
    def warn(self, sid: str, message: str) -> None: ...
    def fail(self, sid: str, error: BaseException) -> None: ...
