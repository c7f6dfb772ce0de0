"""A connector that raises keeps the others running and is retried with backoff; bad params are rejected clearly."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aio_pika
from pydantic import BaseModel, ConfigDict, Field

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.amqp import demand_key
from tributary_common.backoff import Backoff
from tributary_common.timeutil import utcnow
from tributary_ingest.connectors.csv_files import CsvSource
from tributary_ingest.connectors.http_poll import HttpSource
from tributary_ingest.connectors.mqtt import MqttSource
from tributary_ingest.connectors.simulator import SimulatorSource
from tributary_ingest.sdk import BadParams, Connector


class FlakyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fail_times: int = Field(ge=0)
    in_subscribe: bool = False


class FlakySource(Connector[FlakyParams]):
    """Fails `fail_times` times (in subscribe or in read), then emits a sample every 50 ms."""

    params_model = FlakyParams
    attempts: dict[str, list[float]] = {}

    async def subscribe(self, sid: str, params: FlakyParams) -> None:
        tries = self.attempts.setdefault(sid, [])
        tries.append(time.monotonic())
        if params.in_subscribe and len(tries) <= params.fail_times:
            raise ConnectionError(f"subscribe attempt {len(tries)} refused")
        await super().subscribe(sid, params)

    async def read(self, sid: str, params: FlakyParams) -> None:
        if not params.in_subscribe and len(self.attempts[sid]) <= params.fail_times:
            await asyncio.sleep(0.01)
            raise RuntimeError(f"read attempt {len(self.attempts[sid])} broke")
        while True:
            self.sink.emit(sid, utcnow(), len(self.attempts[sid]))
            await asyncio.sleep(0.05)


async def test_failing_connector_is_retried_with_backoff_and_others_keep_running(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    FlakySource.attempts = {}
    settings = make_settings(amqp_url, cache_namespace, backoff_min_s=0.2, backoff_max_s=1.6)
    always = sub("flaky", {"fail_times": 1000})
    in_subscribe = sub("flaky", {"fail_times": 3, "in_subscribe": True})
    healthy = sub("simulator", {"signal": "sine", "rate_hz": 20})
    async with engine(settings, {"flaky": FlakySource, "simulator": SimulatorSource}) as e:
        amqp_bus.demand("flaky", [always, in_subscribe])
        amqp_bus.demand("simulator", [healthy])
        await eventually(lambda: len(FlakySource.attempts.get(always.sid, [])) >= 6, 60, what="six attempts")
        # The sid that failed three times in subscribe recovered and publishes; the healthy source never stopped.
        await eventually(lambda: amqp_bus.values(in_subscribe.sid), what="the recovered sid publishing")
        assert {v for _, v in amqp_bus.values(in_subscribe.sid)} == {4}
        start = time.monotonic()
        await eventually(lambda: len(amqp_bus.by_sid(start).get(healthy.sid, [])) >= 3, what="simulator still flowing")
        await eventually(
            lambda: "RuntimeError: read attempt" in (e.status()["sources"]["flaky"]["failing"].get(always.sid) or ""),
            what="the failure and its reason in /status",
        )
        assert always.sid in e.status()["sources"]["flaky"]["leases"]  # kept while retrying
        assert e.status()["sources"]["simulator"]["failing"] == {}
    # Backoff: the n-th retry waits at least half the n-th ceiling, and the ceilings double up to the maximum.
    bounds = Backoff(settings.backoff_min_s, settings.backoff_max_s)
    for attempts in (FlakySource.attempts[always.sid], FlakySource.attempts[in_subscribe.sid]):
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        for n, gap in enumerate(gaps, start=1):
            assert gap >= bounds.ceiling(n) / 2 - 0.01, f"retry {n} after {gap:.3f} s, under {bounds.ceiling(n) / 2} s"
    assert amqp_bus.values(always.sid) == []


async def test_bad_params_are_rejected_clearly_and_the_instance_keeps_serving(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    good = sub("simulator", {"signal": "sine", "rate_hz": 10})
    bad = {
        "unknown_signal": sub("simulator", {"signal": "triangle"}),
        "negative_rate": sub("simulator", {"signal": "sine", "rate_hz": -1}),
        "extra_field": sub("simulator", {"signal": "sine", "colour": "red"}),
        "missing": sub("simulator", {}),
    }
    async with engine(make_settings(amqp_url, cache_namespace), {"simulator": SimulatorSource}) as e:
        # A malformed demand message first: ignored, nothing breaks.
        assert amqp_bus.channel is not None
        await amqp_bus.control_ex.publish(aio_pika.Message(b"{not json"), routing_key=demand_key("simulator"))
        amqp_bus.demand("simulator", [good, *bad.values()])
        await eventually(lambda: len(e.status()["sources"]["simulator"]["rejected"]) == 4, what="four rejections")
        await eventually(lambda: amqp_bus.values(good.sid), what="the good subscription read")
        status = e.status()["sources"]["simulator"]
        rejected = status["rejected"]
        assert (
            "params.signal: Input should be 'sine', 'ramp', 'random_walk' or 'step'"
            in rejected[bad["unknown_signal"].sid]
        )
        assert "params.rate_hz: Input should be greater than or equal to 0.000001" in rejected[bad["negative_rate"].sid]
        assert "params.colour: Extra inputs are not permitted" in rejected[bad["extra_field"].sid]
        assert "params.signal: Field required" in rejected[bad["missing"].sid]
        assert set(status["leases"]) == {good.sid}
        errors = e.metrics.registry.get_sample_value(
            "tributary_ingest_errors_total", {"source": "simulator", "kind": "bad_params"}
        )
        assert errors == 4  # once per rejected sid, not once per heartbeat
    assert {r.batch.sid for r in amqp_bus.batches} == {good.sid}


def _reason(cls: type[Connector[Any]], params: dict[str, Any]) -> str:
    try:
        cls.parse_params(params)
    except BadParams as exc:
        return str(exc)
    raise AssertionError(f"{params} accepted")


def test_each_builtin_source_names_the_bad_field() -> None:
    assert "params.folder: Value error, folder 'data' must be an absolute path" in _reason(
        CsvSource, {"folder": "data", "value_column": "v"}
    )
    assert "params.pattern" in _reason(CsvSource, {"folder": "/tmp", "value_column": "v", "pattern": "../*.csv"})
    assert "params.value_column: Field required" in _reason(CsvSource, {"folder": "/tmp"})
    assert "params.url" in _reason(HttpSource, {"url": "ftp://example.com/x", "pointer": "/a"})
    assert "JSON pointer 'a/b' must be empty or start with '/'" in _reason(
        HttpSource, {"url": "http://example.com/x", "pointer": "a/b"}
    )
    assert "params.interval_s: Input should be greater than or equal to 0.05" in _reason(
        HttpSource, {"url": "http://example.com/x", "pointer": "/a", "interval_s": 0}
    )
    assert "'#' must be a whole level and the last one" in _reason(MqttSource, {"host": "h", "topic": "a/#/b"})
    assert "params.port: Input should be less than or equal to 65535" in _reason(
        MqttSource, {"host": "h", "topic": "t", "port": 70000}
    )
    assert "params.payload" in _reason(MqttSource, {"host": "h", "topic": "t", "payload": "xml"})
    assert "params.rate_hz: Input should be less than or equal to 100000" in _reason(
        SimulatorSource, {"signal": "sine", "rate_hz": 1e6}
    )
