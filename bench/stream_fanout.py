"""Stream fan-out benchmark: messages/s delivered and publish-to-receive latency (p50/p99) with 10, 100 and 1,000
websocket clients, all on one pattern and each on its own pattern, plus memory per idle connection.

Baseline, measured in the same run by the same load generator: a minimal websockets broadcast server fed by the
same kind of AMQP consumer (one exclusive queue, one binding per pattern, `websockets.broadcast`), without auth,
catch-up, backpressure accounting or metrics. Each server runs as its own process; the load generator is this
process. Run against the local services: `.venv/bin/python bench/stream_fanout.py` (about 1-2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.ratios import record  # noqa: E402
from tests.support import platform  # noqa: E402
from tributary_common.auth import mint_token  # noqa: E402
from tributary_common.ids import new_event_id  # noqa: E402
from tributary_common.matcher import matches  # noqa: E402
from tributary_common.timeutil import format_time, utcnow  # noqa: E402

SECRET = "bench-secret-0123456789abcdef-0123456789"
EXCHANGE = "tributary.events"
SIZES = (10, 100, 1000)
# Messages per scenario: enough frames to measure, few enough to stay within the time budget.
BURST = {("one", 10): 3000, ("one", 100): 400, ("one", 1000): 40, ("distinct", 10): 3000, ("distinct", 100): 3000}
BURST[("distinct", 1000)] = 3000
LATENCY_MSGS = {10: 100, 100: 50, 1000: 20}
LATENCY_RATE = {10: 200.0, 100: 100.0, 1000: 20.0}
PAD = "x" * 200


# ---- the baseline server ----------------------------------------------------------------------------------------


async def baseline_server(amqp_url: str, port: int) -> None:
    """A minimal broadcast server: subscribe frames pick a pattern, the AMQP consumer broadcasts to its sockets."""
    conns: dict[str, set[Any]] = {}
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        key = message.routing_key or ""
        body = message.body.decode()
        for pattern, sockets in conns.items():
            if sockets and matches(pattern, key):
                websockets.broadcast(sockets, '{"type":"event","sub":"s","event":' + body + "}")

    await queue.consume(on_message, no_ack=True)

    async def handler(ws: Any) -> None:
        mine: list[str] = []
        try:
            async for raw in ws:
                frame = orjson.loads(raw)
                if frame.get("op") == "subscribe":
                    pattern = frame["events"]["pattern"]
                    if pattern not in conns:
                        conns[pattern] = set()
                        await queue.bind(exchange, routing_key=pattern)
                    conns[pattern].add(ws)
                    mine.append(pattern)
                    await ws.send(orjson.dumps({"type": "subscribed", "id": frame["id"]}).decode())
        finally:
            for pattern in mine:
                conns[pattern].discard(ws)

    from websockets.asyncio.server import serve

    async with serve(handler, "127.0.0.1", port, max_size=1 << 20, compression=None):
        await asyncio.Future()


# ---- the load generator -----------------------------------------------------------------------------------------


@dataclass
class Result:
    server: str
    mode: str
    clients: int
    delivered: int
    expected: int
    gaps: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Receiver:
    ws: Any
    expected: int = 0
    got: int = 0
    gaps: int = 0
    latencies: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    last_at: float = 0.0

    async def run(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                frame = orjson.loads(raw)
                kind = frame.get("type")
                if kind == "event":
                    now = time.time_ns()
                    self.latencies.append((now - frame["event"]["data"]["ts"]) / 1e6)
                    self.got += 1
                    self.last_at = time.monotonic()
                    if self.got >= self.expected:
                        self.done.set()
                elif kind == "gap":
                    self.gaps += 1


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def publish(exchange: Any, key: str) -> None:
    env = {
        "specversion": "1.0",
        "id": new_event_id(),
        "source": "bench",
        "type": "bench",
        "subject": key.partition(".")[2] or None,
        "time": format_time(utcnow()),
        "dataschema": "/topics/bench/schemas/1",
        "datacontenttype": "application/json",
        "data": {"ts": time.time_ns(), "pad": PAD},
    }
    await exchange.publish(aio_pika.Message(orjson.dumps(env)), routing_key=key)


async def scenario(server: str, url: str, headers: dict[str, str], exchange: Any, mode: str, n: int) -> Result:
    async def open_one(i: int) -> Any:
        ws = await websockets.connect(url, additional_headers=headers, max_size=None, open_timeout=60)
        pattern = "bench.#" if mode == "one" else f"bench.c{i}"
        await ws.send(orjson.dumps({"op": "subscribe", "id": "s", "events": {"pattern": pattern}}).decode())
        reply = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
        assert reply["type"] == "subscribed", reply
        return ws

    sockets: list[Any] = []
    for start in range(0, n, 100):
        sockets += await asyncio.gather(*(open_one(i) for i in range(start, min(n, start + 100))))
    receivers = [Receiver(ws) for ws in sockets]
    tasks = [asyncio.create_task(r.run()) for r in receivers]

    async def phase(count: int, rate: float | None) -> tuple[float, list[float], int, int, int]:
        for r in receivers:
            r.got, r.gaps, r.latencies, r.done = 0, 0, [], asyncio.Event()
            r.expected = count if mode == "one" else count // n
        t0 = time.monotonic()
        keys = ["bench.x" if mode == "one" else f"bench.c{k % n}" for k in range(count)]
        if rate:
            for k, key in enumerate(keys):
                await publish(exchange, key)
                await asyncio.sleep(max(0.0, t0 + (k + 1) / rate - time.monotonic()))
        else:
            for start in range(0, count, 200):  # many in flight: the publisher must not be the bottleneck
                await asyncio.gather(*(publish(exchange, key) for key in keys[start : start + 200]))
        # Until everyone has everything, or nothing has arrived for 3 s (dropped or gapped frames).
        while not all(r.done.is_set() for r in receivers):
            last = max((r.last_at for r in receivers), default=t0)
            if time.monotonic() - max(last, t0) > 3.0:
                break
            await asyncio.sleep(0.05)
        end = max((r.last_at for r in receivers), default=t0)
        lat = [x for r in receivers for x in r.latencies]
        got = sum(r.got for r in receivers)
        return end - t0, lat, got, sum(r.expected for r in receivers), sum(r.gaps for r in receivers)

    burst = BURST[(mode, n)]
    burst = max(n, burst - burst % n) if mode == "distinct" else burst
    seconds, _, delivered, expected, gaps = await phase(burst, None)
    lat_count = LATENCY_MSGS[n] if mode == "one" else max(n, LATENCY_MSGS[n] * 10 - (LATENCY_MSGS[n] * 10) % n)
    lat_rate = LATENCY_RATE[n] if mode == "one" else LATENCY_RATE[n] * 10
    _, latencies, _, _, _ = await phase(lat_count, lat_rate)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    return Result(server, mode, n, delivered, expected, gaps, seconds, p50, p99)


async def wait_port(port: int, proc: asyncio.subprocess.Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not platform.port_open(port):
        if proc.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server on {port} did not start")
        await asyncio.sleep(0.1)


async def run_server(
    name: str, cmd: list[str], env: dict[str, str], port: int, url: str, amqp: str
) -> list[Result | float]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    results: list[Result | float] = []
    try:
        await wait_port(port, proc)
        headers = {"Authorization": f"Bearer {mint_token(SECRET, scopes=['events:read'])}"}
        mem = await idle_memory(proc.pid, url, headers)
        print(f"  {name:8} memory per idle connection: {mem:.1f} KiB", flush=True)
        results.append(mem)
        connection = await aio_pika.connect(amqp)
        channel = await connection.channel(publisher_confirms=False)
        exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        for mode in ("one", "distinct"):
            for n in SIZES:
                r = await scenario(name, url, headers, exchange, mode, n)
                print(
                    f"  {name:8} {mode:8} {n:5} clients: {r.rate:9.0f} msg/s delivered "
                    f"({r.delivered}/{r.expected}, gaps {r.gaps}), p50 {r.p50_ms:6.1f} ms, p99 {r.p99_ms:6.1f} ms",
                    flush=True,
                )
                results.append(r)
                await asyncio.sleep(2.0)  # let the server finish closing the last scenario's sockets
        await connection.close()
    finally:
        await stop(proc)
    return results


async def stop(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except TimeoutError:
        proc.kill()


async def main() -> None:
    platform.require_services()
    vhost = platform.unique("bench-stream")
    amqp = platform.create_vhost(vhost)
    try:
        stream_port, base_port = platform.free_port(), platform.free_port()
        stream_env = {
            "TRIBUTARY_AMQP_URL": amqp,
            "TRIBUTARY_HTTP_PORT": str(stream_port),
            "TRIBUTARY_JWT_SECRET": SECRET,
            "TRIBUTARY_LOG_LEVEL": "WARNING",
            # Every load-generator connection is one principal: above the production per-principal cap (100).
            "TRIBUTARY_MAX_CONNECTIONS_PER_PRINCIPAL": "5000",
        }
        print("stream service (tributary_stream):", flush=True)
        ours = await run_server(
            "stream",
            [sys.executable, "-m", "tributary_stream", "serve"],
            stream_env,
            stream_port,
            f"ws://127.0.0.1:{stream_port}/ws",
            amqp,
        )
        print("baseline (minimal websockets broadcast):", flush=True)
        base = await run_server(
            "baseline",
            [sys.executable, __file__, "--baseline-server", "--amqp", amqp, "--port", str(base_port)],
            {},
            base_port,
            f"ws://127.0.0.1:{base_port}/",
            amqp,
        )
    finally:
        platform.delete_vhost(vhost)

    print("\nratios stream / baseline (throughput: higher is better; latency and memory: lower is better)")
    print(f"  {'mode':8} {'clients':>7} {'msg/s':>7} {'p50':>7} {'p99':>7}")
    for o, b in zip(ours[1:], base[1:], strict=True):
        assert isinstance(o, Result) and isinstance(b, Result)
        print(
            f"  {o.mode:8} {o.clients:7} {ratio(o.rate, b.rate)} {ratio(o.p50_ms, b.p50_ms)} {ratio(o.p99_ms, b.p99_ms)}"
        )
        if o.clients == 1000:
            record("stream_fanout.py", f"fan-out, 1,000 clients, {o.mode} pattern", o.rate, "msg/s", b.rate, ">= 1.0")
    print(f"  memory per idle connection: {ratio(float(ours[0]), float(base[0]))}")  # type: ignore[arg-type]
    record("stream_fanout.py", "idle subscribed websocket", float(ours[0]), "KiB", None, "<= 24")  # type: ignore[arg-type]


def ratio(x: float, y: float) -> str:
    return f"{x / y:7.2f}" if y else "    n/a"


async def idle_memory(pid: int, url: str, headers: dict[str, str], n: int = 1000) -> float:
    """KiB of server RSS per idle connection (subscribed to one shared pattern, no traffic)."""

    async def open_one() -> Any:
        ws = await websockets.connect(url, additional_headers=headers, open_timeout=60)
        await ws.send(orjson.dumps({"op": "subscribe", "id": "s", "events": {"pattern": "idle.#"}}).decode())
        await asyncio.wait_for(ws.recv(), 60)
        return ws

    warm = [await open_one() for _ in range(5)]  # first-use allocations are not per-connection cost
    await asyncio.sleep(0.5)
    before = rss_kib(pid)
    sockets: list[Any] = []
    for start in range(0, n, 100):
        sockets += await asyncio.gather(*(open_one() for _ in range(start, min(n, start + 100))))
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    await asyncio.gather(*(ws.close() for ws in sockets + warm), return_exceptions=True)
    await asyncio.sleep(2.0)
    return (after - before) / n


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline-server", action="store_true")
    parser.add_argument("--amqp")
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.baseline_server:
        asyncio.run(baseline_server(args.amqp, args.port))
    else:
        t = time.monotonic()
        asyncio.run(main())
        print(f"\nbenchmark took {time.monotonic() - t:.0f} s")
