"""Hub publishing: events/s and p50/p99 latency for single and batch publishing through the hub's HTTP API
(validation, CloudEvents envelope, persistent publish with confirms), measured in the same run as a baseline
of raw aio-pika publishing the same envelopes with confirms and the same in-flight window.

The hub runs as a real process (`python -m tributary_hub serve`, one uvicorn worker, recorders disabled so
that only the publish path is measured) against the local RabbitMQ, FerretDB and Memcached, in a vhost,
database and cache namespace of its own. The hub is measured three times in the same run: untraced, traced
with the production sampler (`parentbased_traceidratio`, 10 %), and traced with every request sampled, each
exporting OTLP to a receiver in another process; the tracing overhead is printed as ratios. About two minutes.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support.ratios import record
from tests.support import platform
from tests.support.processes import ServiceProcess
from tributary_common.auth import mint_token
from tributary_common.events import CloudEvent
from tributary_common.ids import new_event_id
from tributary_common.timeutil import utcnow

SECRET = "bench-secret-0123456789-0123456789-abcdef"
SCHEMA = {
    "type": "object",
    "required": ["temp", "unit"],
    "properties": {
        "temp": {"type": "number", "minimum": -50, "maximum": 150},
        "unit": {"type": "string", "enum": ["C", "F"]},
        "line": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": False,
}
SINGLE_CONCURRENCY = 64  # requests in flight = publishes in flight for the baseline
BATCH_SIZE = 100
BATCH_CONCURRENCY = 4  # batches in flight: 400 publishes in flight for both
WARMUP_S = 1.5
MEASURE_S = 6.0


def data(i: int) -> dict[str, object]:
    return {"temp": 20 + (i % 50) / 10, "unit": "C", "line": i % 7, "at": "2026-11-26T10:00:00Z"}


def envelope(i: int) -> CloudEvent:
    return CloudEvent(
        id=new_event_id(),
        source="/bench",
        type="bench",
        subject=f"plant1.line{i % 7}",
        time=utcnow(),
        dataschema="/topics/bench/schemas/1",
        data=data(i),
    )


async def run(op: Callable[[int], Awaitable[int]], concurrency: int) -> tuple[float, list[float]]:
    """Run `op` from `concurrency` workers for WARMUP_S + MEASURE_S; events/s and latencies (ms) in the window."""
    latencies: list[float] = []
    events = 0
    start = time.perf_counter()
    measure_from = start + WARMUP_S
    stop_at = measure_from + MEASURE_S
    counter = 0

    async def worker() -> None:
        nonlocal events, counter
        while (now := time.perf_counter()) < stop_at:
            counter += 1
            n = await op(counter)
            done = time.perf_counter()
            if now >= measure_from and done <= stop_at:
                latencies.append((done - now) * 1000)
                events += n

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return events / MEASURE_S, latencies


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def baseline(url: str) -> dict[str, tuple[float, list[float]]]:
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange("tributary.events", aio_pika.ExchangeType.TOPIC, durable=True)

    async def publish(ev: CloudEvent) -> None:
        message = aio_pika.Message(
            ev.model_dump_json().encode(),
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=ev.id,
        )
        await exchange.publish(message, routing_key=ev.routing_key, mandatory=False)

    async def one(i: int) -> int:
        await publish(envelope(i))
        return 1

    async def batch(i: int) -> int:
        await asyncio.gather(*(publish(envelope(i * BATCH_SIZE + k)) for k in range(BATCH_SIZE)))
        return BATCH_SIZE

    try:
        return {"single": await run(one, SINGLE_CONCURRENCY), "batch": await run(batch, BATCH_CONCURRENCY)}
    finally:
        await connection.close()


class Connection:
    """A minimal HTTP/1.1 keep-alive client: httpx's pool costs more CPU than the hub at 64 connections on a
    2-core machine, which would measure the client instead of the server."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {self.token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def through_hub(port: int) -> dict[str, tuple[float, list[float]]]:
    token = mint_token(SECRET, subject="bench")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    ) as http:
        created = await http.post("/topics", json={"name": "bench", "schema": SCHEMA})
        if created.status_code != 409:  # the topic stays from the previous tracing mode
            created.raise_for_status()
    pool: list[Connection] = [Connection(port, token) for _ in range(SINGLE_CONCURRENCY)]

    def checkout() -> Connection:
        return pool.pop()

    async def one(i: int) -> int:
        conn = checkout()
        try:
            status, body = await conn.post(
                "/topics/bench/events",
                orjson.dumps({"data": data(i), "subject": f"plant1.line{i % 7}"}),
                "application/json",
            )
        finally:
            pool.append(conn)
        if status != 202:
            raise RuntimeError(body.decode())
        return 1

    async def batch(i: int) -> int:
        lines = b"\n".join(
            orjson.dumps({"data": data(i * BATCH_SIZE + k), "subject": f"plant1.line{k % 7}"})
            for k in range(BATCH_SIZE)
        )
        conn = checkout()
        try:
            status, body = await conn.post("/topics/bench/events:batch", lines, "application/x-ndjson")
        finally:
            pool.append(conn)
        if status != 202:
            raise RuntimeError(body.decode())
        return BATCH_SIZE

    try:
        return {"single": await run(one, SINGLE_CONCURRENCY), "batch": await run(batch, BATCH_CONCURRENCY)}
    finally:
        for conn in pool:
            conn.close()


TRACING_MODES: dict[str, dict[str, str]] = {
    "untraced": {"OTEL_SDK_DISABLED": "true"},
    "traced 10%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "traced 100%": {"OTEL_TRACES_SAMPLER": "always_on"},
    # Untraced at INFO: one JSON access-log line per request against none (TRIBUTARY_ACCESS_LOG_SAMPLE=0).
    "access log": {"OTEL_SDK_DISABLED": "true", "TRIBUTARY_LOG_LEVEL": "INFO", "TRIBUTARY_LOG_JSON": "true"},
    "no access log": {
        "OTEL_SDK_DISABLED": "true",
        "TRIBUTARY_LOG_LEVEL": "INFO",
        "TRIBUTARY_LOG_JSON": "true",
        "TRIBUTARY_ACCESS_LOG_SAMPLE": "0",
    },
}
# BENCH_HUB_MODES=name,name runs only those (and "untraced", the reference); default: all.
SELECTED = [m for m in os.environ.get("BENCH_HUB_MODES", "").split(",") if m]
RECEIVER = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); from tests.support.otlp import OtlpReceiver; "
    "r = OtlpReceiver().start(); print(r.port, flush=True); time.sleep(3600)"
)


def start_receiver() -> tuple[subprocess.Popen[str], str]:
    """The span receiver runs in its own process so that it does not compete with the load generator."""
    root = str(Path(__file__).resolve().parents[1])
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, root], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    return receiver, f"http://127.0.0.1:{receiver.stdout.readline().strip()}"


async def measure_hub(env: dict[str, str], port: int) -> dict[str, tuple[float, list[float]]]:
    log = Path(tempfile.mkdtemp()) / "hub.log"
    hub = ServiceProcess("tributary_hub", ["serve"], env, log, port)
    try:
        hub.start(timeout=60)
        hub.wait_healthy(60, "/readyz")
        return await through_hub(port)
    finally:
        hub.terminate()


async def main() -> None:
    platform.require_services()
    vhost = platform.unique("bench-hub")
    url = platform.create_vhost(vhost)
    db = platform.unique("bench_hub").replace("-", "_")
    port = platform.free_port()
    env = {
        "TRIBUTARY_AMQP_URL": url,
        "TRIBUTARY_MONGODB_URL": platform.mongodb_url(),
        "TRIBUTARY_MONGODB_DB": db,
        "TRIBUTARY_HTTP_PORT": str(port),
        "TRIBUTARY_MEMCACHED_PORT": str(platform.MEMCACHED_PORT),
        "TRIBUTARY_CACHE_NAMESPACE": platform.unique("bench"),
        "TRIBUTARY_JWT_SECRET": SECRET,
        "TRIBUTARY_RECORDERS_ENABLED": "false",
        "TRIBUTARY_DEMAND_ENABLED": "false",
        "TRIBUTARY_LOG_LEVEL": "WARNING",
    }
    receiver, endpoint = start_receiver()
    otlp = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "tributary-hub",
    }
    results: dict[str, dict[str, tuple[float, list[float]]]] = {}
    try:
        for mode, extra in TRACING_MODES.items():
            if SELECTED and mode != "untraced" and mode not in SELECTED:
                continue
            mode_env = {**env, **extra} if "OTEL_SDK_DISABLED" in extra else {**env, **otlp, **extra}
            results[mode] = await measure_hub(mode_env, port)
            if mode == "untraced":
                # Right after the hub it is compared with: both are bound by the broker's confirm latency with a
                # fixed window, which drifts with the machine's load over the minutes the other modes take.
                base_results = await baseline(url)
    finally:
        receiver.kill()
        platform.delete_vhost(vhost)
        import pymongo

        pymongo.MongoClient(platform.mongodb_url()).drop_database(db)

    hub_results = results["untraced"]
    print(
        f"hub publish benchmark ({MEASURE_S:.0f} s per case; single: {SINGLE_CONCURRENCY} in flight; "
        f"batch: {BATCH_CONCURRENCY} x {BATCH_SIZE} in flight)"
    )
    print(f"{'case':<8} {'path':<14} {'events/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'ops':>7}")
    for case in ("single", "batch"):
        for name, res in [*((f"hub {m}", r) for m, r in results.items()), ("aio-pika", base_results)]:
            rate, lat = res[case]
            print(f"{case:<8} {name:<14} {rate:>10.0f} {pct(lat, 0.5):>9.2f} {pct(lat, 0.99):>9.2f} {len(lat):>7}")
        hub_rate, base_rate = hub_results[case][0], base_results[case][0]
        if case == "batch":  # the goal (b); single POSTs have theirs in http_publish.py (wrk)
            record(
                "hub_publish.py",
                f"batch publish ({BATCH_SIZE}/batch) vs aio-pika",
                hub_rate,
                "ev/s",
                base_rate,
                ">= 1.0",
            )
        print(
            f"{case:<8} ratio hub/baseline: {hub_rate / base_rate:.2f} events/s; p50 latency x"
            f"{statistics.median(hub_results[case][1]) / statistics.median(base_results[case][1]):.1f}"
        )
        for mode in ("traced 10%", "traced 100%"):
            if mode in results:
                print(f"{case:<8} ratio {mode}/untraced: {results[mode][case][0] / hub_rate:.2f} events/s")
        if "access log" in results and "no access log" in results:
            on, off = results["access log"][case], results["no access log"][case]
            print(
                f"{case:<8} ratio access log/none: {on[0] / off[0]:.2f} events/s; p50 "
                f"{pct(on[1], 0.5):.2f} vs {pct(off[1], 0.5):.2f} ms"
            )


if __name__ == "__main__":
    asyncio.run(main())
