"""The simulator through the whole framework, in-process, against the real RabbitMQ and Memcached."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.timeutil import format_time
from tributary_ingest.connectors.signals import make_signal
from tributary_ingest.connectors.simulator import SimulatorParams, SimulatorSource

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def expected(params: dict[str, object], t: datetime) -> float:
    p = SimulatorParams.model_validate(params)
    f = make_signal(
        p.signal, seed=p.seed, offset=p.offset, amplitude=p.amplitude, period_s=p.period_s, phase=p.phase, step=p.step
    )
    us = round((t - EPOCH).total_seconds() * 1e6)
    interval = round(1e6 / p.rate_hz)
    assert us % interval == 0, f"{format_time(t)} is not on the {interval} µs grid"
    return f(us // interval, us / 1e6)


async def test_signals_are_deterministic_and_strictly_increasing(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    params = [
        {"signal": "sine", "seed": 1, "rate_hz": 20, "period_s": 5, "amplitude": 10},
        {"signal": "ramp", "rate_hz": 20, "period_s": 3},
        {"signal": "random_walk", "seed": 7, "rate_hz": 50},
        {"signal": "step", "seed": 3, "rate_hz": 20, "period_s": 0.5},
    ]
    subs = [sub("simulator", p) for p in params]
    # Two independent clusters (separate lease namespaces) read the same subscriptions: two runs side by side.
    async with (
        engine(make_settings(amqp_url, cache_namespace + "a", instance_id="run-a"), {"simulator": SimulatorSource}),
        engine(make_settings(amqp_url, cache_namespace + "b", instance_id="run-b"), {"simulator": SimulatorSource}),
    ):
        amqp_bus.demand("simulator", subs)

        def enough() -> bool:
            got = amqp_bus.by_sid()
            return all(
                sum(len(r.batch.samples) for r in got.get(s.sid, []) if r.app_id == run) >= 30
                for s in subs
                for run in ("run-a", "run-b")
            )

        await eventually(enough, what="30 samples of every signal from both runs")
    assert amqp_bus.assert_strictly_increasing(per_publisher=True) >= 240
    for s, p in zip(subs, params, strict=True):
        runs: dict[str, dict[str, object]] = {"run-a": {}, "run-b": {}}
        for r in amqp_bus.batches:
            if r.batch.sid == s.sid:
                assert r.batch.source == "simulator"
                for sample in r.batch.samples:
                    assert sample.v == expected(p, sample.t), f"{p['signal']} at {format_time(sample.t)}"
                    runs[str(r.app_id)][format_time(sample.t)] = sample.v
        common = runs["run-a"].keys() & runs["run-b"].keys()
        assert len(common) >= 10, f"{p['signal']}: the two runs overlap on only {len(common)} timestamps"
        assert all(runs["run-a"][t] == runs["run-b"][t] for t in common)
