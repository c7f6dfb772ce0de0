"""Ingest throughput: samples/s the simulator publishes through the whole framework (demand, leases, dedup,
batching, spans, confirms) at 10, 100 and 1,000 sids, against a baseline that publishes the same batches
(same sizes, same bodies, same per-sid ordering: one batch per sid in flight) directly with aio-pika.

Runs against the local RabbitMQ and Memcached in a vhost and cache namespace of its own; under two minutes.
The cyclic GC is tuned as `tributary-ingest serve` tunes it (`gc_tuning`), for both sides (one process). Beside
each rate: the CPU the process used while measured (in cores; near 1.0 means CPU-bound, not waiting on the
broker), the share of that time in the cyclic GC, and the ratio of samples per CPU-second ("cpu ratio"), which
moves less than the rates when other processes load the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.process_meter import ProcessMeter, Usage
from bench.support.ratios import record
from bench.support.source_meter import SourceMeter
from tests.support import platform
from tributary_common.amqp.topology import CONTROL, SAMPLES, demand_key
from tributary_common.canonical import canonical_sid
from tributary_common.control import Demand, DemandedSubscription
from tributary_common.timeutil import utcnow
from tributary_ingest.connectors.simulator import SimulatorSource
from tributary_ingest.engine import Engine
from tributary_ingest.gc_tuning import tune_gc
from tributary_ingest.pipeline import Row
from tributary_ingest.publisher import encode_batch
from tributary_ingest.settings import IngestSettings

SIZES = (10, 100, 1000)
# Offered load: far more than one core can publish, so both sides run flat out. It was 300,000, which the framework
# came to publish: the window then measured the offer (and small bursts), 2.9-3.5 µs of CPU a sample against
# 2.4-2.8 at 1-3 M offered (bench/README.md, Ingest, fourth pass). A simulated sid runs at most 100 kHz.
OFFERED_SAMPLES_PER_S = 2_000_000
MAX_RATE_HZ = 100_000
# Until the sids are backed up (the simulator waits in `room()`, batches are full): at 1,000 sids the buffers
# take ~5 s to fill, and before that the simulator chases real time in bursts of ~16 samples, so a window that
# starts at 2 s (as it did) measures the load generator catching up more than ingest (bench/README.md, Ingest).
WARMUP_S = 12.0
MEASURE_S = 6.0
BASELINE_BATCHES_PER_SID_CAP = 400


def subscriptions(n: int) -> list[DemandedSubscription]:
    rate = min(MAX_RATE_HZ, OFFERED_SAMPLES_PER_S / n)
    schema = SimulatorSource.params_schema()
    out = []
    for i in range(n):
        params = {"signal": "sine", "seed": i, "rate_hz": rate, "period_s": 10}
        # Canonical sids, as the hub makes them (else ingest warns once per sid, 1,000 lines at the widest size).
        out.append(DemandedSubscription(sid=canonical_sid("simulator", schema, params), params=params))
    return out


async def framework(url: str, n: int) -> tuple[float, float, float, Usage, float]:
    """Samples/s published by the ingest engine, the mean batch size it used, the leases it lost, what the
    process spent meanwhile, and the CPU seconds of it the simulator spent making the samples (`SourceMeter`)."""
    settings = IngestSettings(
        amqp_url=url,
        cache_namespace=platform.unique("bench"),
        instance_id=platform.unique("bench"),
        lease_ttl_s=15,
        reconcile_interval_s=0.2,
        publish_persistent=False,
        capacity={"simulator": n},
        log_level="WARNING",
    )
    engine = Engine(settings, {"simulator": SimulatorSource})
    source = SourceMeter()
    installed = source.installed()
    installed.__enter__()
    await engine.start()
    subs = subscriptions(n)
    conn = await aio_pika.connect_robust(url)
    try:
        channel = await conn.channel()
        control = await channel.declare_exchange(CONTROL.name, "topic", durable=True)
        demand = Demand(source="simulator", requester="bench", subscriptions=subs, ttl_s=60, sent_at=utcnow())
        await control.publish(aio_pika.Message(demand.model_dump_json().encode()), routing_key=demand_key("simulator"))
        runtime = engine.runtimes["simulator"]
        deadline = time.monotonic() + 30
        while len(runtime.owned) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a plain attribute
            await asyncio.sleep(0.1)
        await asyncio.sleep(WARMUP_S)
        batches = engine.metrics.batches.labels("simulator")
        meter = ProcessMeter()
        meter.start()
        s0, b0, t0, src0 = runtime.published.count, batches._value.get(), time.perf_counter(), source.seconds()
        await asyncio.sleep(MEASURE_S)
        s1, b1, t1, src1 = runtime.published.count, batches._value.get(), time.perf_counter(), source.seconds()
        usage = meter.stop()
        lost = engine.metrics.registry.get_sample_value("tributary_ingest_leases_lost_total", {"source": "simulator"})
    finally:
        await conn.close()
        await engine.stop()
        installed.__exit__(None, None, None)
    return (s1 - s0) / (t1 - t0), (s1 - s0) / max(1.0, b1 - b0), lost or 0.0, usage, src1 - src0


async def baseline(url: str, n: int, batch_size: int, total_samples: float, encode: bool) -> tuple[float, Usage]:
    """Samples/s publishing the same SampleBatch bodies with aio-pika, confirms on, one in flight per sid.

    `encode`: build each body inside the timed loop (rows prepared beforehand), to show the cost of JSON encoding.
    """
    per_sid = max(1, min(BASELINE_BATCHES_PER_SID_CAP, round(total_samples / n / batch_size)))
    subs = subscriptions(n)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    batches: dict[str, list[list[Row]]] = {}
    for s in subs:
        k = 0
        out: list[list[Row]] = []
        for _ in range(per_sid):
            out.append([(start + timedelta(microseconds=100 * (k + j)), float(j), None) for j in range(batch_size)])
            k += batch_size
        batches[s.sid] = out
    encoded = {} if encode else {sid: [encode_batch("simulator", sid, b) for b in bs] for sid, bs in batches.items()}
    conn = await aio_pika.connect_robust(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(SAMPLES.name, "topic", durable=True)

        async def one_sid(sid: str) -> None:
            for i, rows in enumerate(batches[sid]):
                body = encode_batch("simulator", sid, rows) if encode else encoded[sid][i]
                await exchange.publish(
                    aio_pika.Message(body, content_type="application/json", headers={"traceparent": "00-" + "0" * 49}),
                    routing_key=f"simulator.{sid}",
                    mandatory=False,
                )

        meter = ProcessMeter()
        meter.start()
        t0 = time.perf_counter()
        await asyncio.gather(*(one_sid(s.sid) for s in subs))
        elapsed = time.perf_counter() - t0
        usage = meter.stop()
    finally:
        await conn.close()
    return per_sid * n * batch_size / elapsed, usage


async def main(sizes: tuple[int, ...]) -> None:
    logging.basicConfig(level=logging.WARNING)
    tune_gc()
    platform.require_services()
    vhost = platform.unique("bench-ingest")
    url = platform.create_vhost(vhost)
    print(f"ingest throughput (vhost {vhost}); simulator offered up to {OFFERED_SAMPLES_PER_S:,} samples/s in total")
    print("framework: simulator -> dedup -> batches -> spans -> publish with confirms (samples/s confirmed)")
    print("aio-pika: the same batches, pre-encoded, published with confirms; +encode: JSON encoding timed too")
    print("cpu: cores the process used while measured; gc: share of that wall time in the cyclic GC")
    print(
        "µs/sample: the framework's CPU per sample, of it src: the simulator making the samples (the baseline's rows"
        " are made before its clock starts); base µs: the +encode baseline's; w/o src ratio: base / (framework - src)"
    )
    print(
        f"{'sids':>6} {'framework/s':>12} {'batch':>6} {'cpu':>5} {'gc':>5} {'aio-pika/s':>12} {'ratio':>6} "
        f"{'+encode/s':>11} {'cpu':>5} {'gc':>5} {'ratio':>6} {'cpu ratio':>9} {'leases lost':>11} "
        f"{'µs/sample':>9} {'of it src':>9} {'base µs':>7} {'w/o src ratio':>13}"
    )
    try:
        for n in sizes:
            rate, mean_batch, lost, used, source_s = await framework(url, n)
            size = max(1, round(mean_batch))
            raw, _ = await baseline(url, n, size, rate * MEASURE_S, encode=False)
            enc, enc_used = await baseline(url, n, size, rate * MEASURE_S, encode=True)
            # Samples per CPU-second, framework over baseline: the same ratio if both had the same CPU.
            cpu_ratio = (rate / used.cpu_cores) / (enc / enc_used.cpu_cores)
            # CPU per sample: the framework's with and without the simulator's making of the samples (the
            # baseline's rows are made before its clock starts), against the baseline's with encoding.
            per_sample = used.cpu_cores * used.wall_s / (rate * used.wall_s) * 1e6
            source_per_sample = source_s / (rate * used.wall_s) * 1e6
            base_per_sample = enc_used.cpu_cores / enc * 1e6
            without_source = base_per_sample / (per_sample - source_per_sample)
            print(
                f"{n:>6} {rate:>12,.0f} {mean_batch:>6.0f} {used.cpu_cores:>5.2f} {used.gc_share:>5.1%} "
                f"{raw:>12,.0f} {rate / raw:>6.3f} {enc:>11,.0f} {enc_used.cpu_cores:>5.2f} {enc_used.gc_share:>5.1%} "
                f"{rate / enc:>6.3f} {cpu_ratio:>9.3f} {lost:>11.0f} "
                f"{per_sample:>9.2f} {source_per_sample:>9.2f} {base_per_sample:>7.2f} {without_source:>13.3f}",
                flush=True,
            )
            if n == 1000:
                record(
                    "ingest_throughput.py",
                    "ingest, 1,000 sids, vs aio-pika + encoding",
                    rate,
                    "samples/s",
                    enc,
                    ">= 0.5",
                )
    finally:
        platform.delete_vhost(vhost)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sids", type=lambda s: tuple(int(x) for x in s.split(",")), default=SIZES)
    asyncio.run(main(parser.parse_args().sids))
