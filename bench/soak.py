"""Soak: the whole platform under steady load for ten minutes; does any process keep growing?

Real hub (API and recorders), ingest and stream processes on the local services. Load, all from this process:
500 events/s published through the hub (batches of 10 every 20 ms), 100 websocket clients following the topic,
and one unitop of a 1 kHz simulator item recorded and followed by one more websocket client. The resident memory
of each service process is read after a warm-up and at the end; the growth in between is what a leak looks like
(goal: under 10 %). Clients count what they receive, so a stalled fan-out shows too.

Not part of `make test` (it takes the duration it is given): `.venv/bin/python bench/soak.py [--duration 600]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.stack import Stack, run_stack  # noqa: E402

CLIENTS = 100
BATCH = 10
BATCH_INTERVAL_S = 0.02  # 10 events every 20 ms: 500 events/s
PUBLISHERS = 5
SIMULATOR_HZ = 1000.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory(stack: Stack) -> dict[str, float]:
    return {name: rss_mib(p.proc.pid) for name, p in stack.procs.items() if p.proc is not None}


async def follower(url: str, token: str, sub: dict[str, Any], counts: dict[str, int], key: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with websockets.connect(f"{url}/ws", additional_headers=headers, max_size=None) as ws:
        await ws.send(orjson.dumps({"op": "subscribe", "id": "s", **sub}).decode())
        async for raw in ws:
            frame = orjson.loads(raw)
            if frame["type"] == "event":
                counts[key] = counts.get(key, 0) + 1
            elif frame["type"] == "samples":
                counts[key] = counts.get(key, 0) + len(frame.get("samples", []))
            elif frame["type"] == "gap":
                counts["gaps"] = counts.get("gaps", 0) + 1
            elif frame["type"] == "error":
                counts["errors"] = counts.get("errors", 0) + 1
                print(f"{key} client: error frame {frame}")


async def publisher(hub: httpx.AsyncClient, topic: str, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """One of PUBLISHERS paced loops: together they offer 500 events/s whatever one request's latency."""
    body = [{"data": {"value": 21.5, "unit": "C"}, "subject": "plant1.line1"}] * BATCH
    next_at = time.monotonic()
    while not stop.is_set():
        r = await hub.post(f"/topics/{topic}/events:batch", json=body)
        counts["published" if r.status_code == 202 else "refused"] = counts.get(
            "published" if r.status_code == 202 else "refused", 0
        ) + (BATCH if r.status_code == 202 else 1)
        next_at += BATCH_INTERVAL_S * PUBLISHERS
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def soak(stack: Stack, duration_s: float, warmup_s: float) -> None:
    topic = f"soak-{uuid.uuid4().hex[:6]}"
    schema = {"type": "object", "required": ["value"], "properties": {"value": {"type": "number"}}}
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.hub_url, headers=headers, timeout=30) as hub:
        (await hub.post("/topics", json={"name": topic, "schema": schema})).raise_for_status()
        for _ in range(300):  # ingest announces the simulator shortly after start
            if any(s["name"] == "simulator" for s in (await hub.get("/sources")).json()["items"]):
                break
            await asyncio.sleep(0.1)
        item = {"source": "simulator", "params": {"signal": "sine", "rate_hz": SIMULATOR_HZ}}
        unitop = {"name": f"soak-{uuid.uuid4().hex[:6]}", "items": {"flow": item}, "record": True}
        (await hub.post("/unitops", json=unitop)).raise_for_status()

        counts: dict[str, int] = {}
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(
                follower(stack.stream_url, stack.token, {"events": {"pattern": f"{topic}.#"}}, counts, "events")
            )
            for _ in range(CLIENTS)
        ]
        tasks.append(
            asyncio.create_task(
                # Its own principal: the 100 event clients are the per-principal connection limit of one.
                follower(
                    stack.stream_url,
                    stack.mint(subject="soak-samples"),
                    {"unitop": {"name": unitop["name"]}},
                    counts,
                    "samples",
                )
            )
        )
        tasks += [asyncio.create_task(publisher(hub, topic, stop, counts)) for _ in range(PUBLISHERS)]
        try:
            await asyncio.sleep(warmup_s)
            start_mem, start_counts, t0 = memory(stack), dict(counts), time.monotonic()
            print(f"after {warmup_s:.0f} s warm-up: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in start_mem.items()))
            while time.monotonic() - t0 < duration_s:
                await asyncio.sleep(min(60.0, duration_s - (time.monotonic() - t0)))
                now = memory(stack)
                print(f"  t+{time.monotonic() - t0:4.0f} s: " + ", ".join(f"{k} {v:.1f}" for k, v in now.items()))
            end_mem, elapsed = memory(stack), time.monotonic() - t0
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t

    def rate(key: str) -> float:
        return (counts.get(key, 0) - start_counts.get(key, 0)) / elapsed

    print(f"\nsoak of {elapsed:.0f} s after warm-up")
    print("| process | RSS after warm-up (MiB) | RSS at end (MiB) | growth |")
    print("|---|---|---|---|")
    for name in start_mem:
        growth = (end_mem[name] - start_mem[name]) / start_mem[name] * 100
        print(f"| {name} | {start_mem[name]:.1f} | {end_mem[name]:.1f} | {growth:+.1f} % |")
    print(f"published {rate('published'):.0f} events/s (refused: {counts.get('refused', 0)})")
    print(f"delivered {rate('events'):.0f} events/s to {CLIENTS} clients ({rate('events') / CLIENTS:.0f} each)")
    print(f"samples delivered {rate('samples'):.0f}/s (simulator at {SIMULATOR_HZ:.0f} Hz)")
    print(f"gaps {counts.get('gaps', 0)}, error frames {counts.get('errors', 0)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds measured after the warm-up")
    parser.add_argument("--warmup", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs, run_stack(Path(logs)) as stack:
        asyncio.run(soak(stack, args.duration, args.warmup))


if __name__ == "__main__":
    main()
