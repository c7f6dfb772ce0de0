"""The event recorder against raw `insert_many` (issue 13: recorder >= 0.8x raw `insert_many` of the same documents on
the same server).

Only public entry points, so that the bench outlives changes to the storage behind them: the hub's HTTP API
(`tributary-hub serve`, recorders off) publishes `--events` events (batches of 100 through
`POST /topics/{topic}/events:batch`, spread over `--topics` topics) while a queue of this bench's own, bound to
`tributary.events` like the recorder's, captures the exact envelopes. Then `tributary-hub recorder` (the process
as deployed) drains the recorder's queue: its rate is events / (time from its /readyz answering, its consumer started, to
every event recorded, by its `tributary_hub_recorded_total` on /metrics). The baseline, in the same
run on the same FerretDB with the services' client and write options (`new_client`): the captured envelopes as
documents (`_id = <topic>/<id>`, the envelope's fields, as the recorder keys them) with `insert_many` in batches of
the events recorder's batch size (`TRIBUTARY_RECORDER_EVENT_BATCH_SIZE`, default 2,000), one write at a time like
the recorder.
Beside the rates, on a shared machine steadier: the CPU per event of the recorder process and of the local FerretDB
process (`/proc`, while the recorder drains), and the floor the recorder cannot pass: a second capture queue
holding the same envelopes consumed by the recorder's receiver alone (`TRIBUTARY_RECORDER_EVENT_RECEIVER`: `pika`,
the default, or `aio-pika`; prefetch 2,000, one `ack(multiple=True)` per 500, nothing decoded or stored), its rate
and CPU per event.
`.venv/bin/python bench/recorder_rate.py` (about a minute at the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.amqp_consume import with_pika_receiver  # noqa: E402
from bench.http_publish import SECRET, hub  # noqa: E402
from bench.support.ratios import record  # noqa: E402
from tests.support import platform  # noqa: E402
from tests.support.processes import ServiceProcess  # noqa: E402
from tributary_common.amqp.topology import EVENTS  # noqa: E402
from tributary_common.auth import mint_token  # noqa: E402
from tributary_common.mongo import new_client  # noqa: E402
from tributary_hub.settings import HubSettings  # noqa: E402

SCHEMA = {"type": "object", "required": ["value"], "properties": {"value": {"type": "number"}}}
# The events recorder's default batch size (TRIBUTARY_RECORDER_EVENT_BATCH_SIZE), so that both write alike.
BATCH = int(os.environ.get("TRIBUTARY_RECORDER_EVENT_BATCH_SIZE") or HubSettings().recorder_event_batch_size)
# The events recorder's receiver (TRIBUTARY_RECORDER_EVENT_RECEIVER), which the floor measures alone.
RECEIVER = os.environ.get("TRIBUTARY_RECORDER_EVENT_RECEIVER") or HubSettings().recorder_event_receiver


async def publish(url: str, token: str, topics: int, events: int) -> None:
    """`events` events through the hub's batch endpoint, 100 per request, topics in turn."""
    base = url.removesuffix("/topics/bench/events")
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        for t in range(topics):
            (await http.post("/topics", json={"name": f"rec{t}", "schema": SCHEMA})).raise_for_status()
        for first in range(0, events, 100):
            t = first // 100 % topics
            lines = b"\n".join(
                orjson.dumps({"data": {"value": n}, "subject": f"line{n % 7}"})
                for n in range(first, min(events, first + 100))
            )
            answer = await http.post(
                f"/topics/rec{t}/events:batch", content=lines, headers={"Content-Type": "application/x-ndjson"}
            )
            answer.raise_for_status()


async def capture_queue(
    amqp_url: str, name: str = "bench.capture"
) -> tuple[aio_pika.abc.AbstractRobustConnection, aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1000 if name == "bench.capture" else 2000)
    exchange = await channel.declare_exchange(EVENTS.name, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(name, durable=False, auto_delete=False)
    await queue.bind(exchange, routing_key="#")
    return connection, queue


async def consume_floor(url: str, queue: aio_pika.abc.AbstractQueue, events: int) -> tuple[float, float]:
    """(events/s, CPU s per event) of the recorder's receiver (`RECEIVER`) alone taking the envelopes into its inbox,
    acking every 500: what the recorder pays before it converts or stores anything."""
    start, cpu = time.perf_counter(), time.process_time()
    if RECEIVER == "pika":
        await with_pika_receiver(url, events, queue.name)  # prefetch 2,000, an ack per 500
    else:
        inbox: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await queue.consume(inbox.put)
        for n in range(1, events + 1):
            message = await inbox.get()
            if n % 500 == 0 or n == events:
                await message.ack(multiple=True)
    return events / (time.perf_counter() - start), (time.process_time() - cpu) / events


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (0 when there is none to read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ferretdb_pid() -> int | None:
    """The local FerretDB's process serving `FERRETDB_PORT`, when it runs on this machine (its CPU is taken from the
    same cores). With the PostgreSQL handler, PostgreSQL's own CPU is not counted."""
    pattern = f"ferretdb.*-listen 127.0.0.1:{platform.FERRETDB_PORT}( |$)"
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


async def captured(queue: aio_pika.abc.AbstractQueue, events: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    async with queue.iterator() as messages:
        async for message in messages:
            envelope = orjson.loads(message.body)
            topic = (message.routing_key or "").partition(".")[0]
            docs.append({"_id": f"{topic}/{envelope['id']}", **envelope})
            await message.ack()
            if len(docs) >= events:
                break
    return docs


async def recorder_rate(env: dict[str, str], events: int, timeout: float) -> tuple[float, float, float]:
    """Start the recorder process on the filled queue; events/s from its readiness (its consumer started: /readyz)
    to its `tributary_hub_recorded_total` counter (on its /metrics) reaching `events`; with the CPU seconds per
    event of the recorder process and of FerretDB over the same span."""
    port = platform.free_port()
    log = Path(tempfile.mkdtemp()) / "recorder.log"
    recorder = ServiceProcess("tributary_hub", ["recorder"], {**env, "TRIBUTARY_HTTP_PORT": str(port)}, log, None)
    recorder.start()
    pid, ferret = recorder.proc.pid if recorder.proc else None, ferretdb_pid()
    try:
        deadline = time.monotonic() + timeout
        started: float | None = None
        done = 0.0
        cpu0 = (0.0, 0.0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            while True:
                now = time.monotonic()
                try:
                    if started is None:
                        if (await http.get("/readyz")).status_code == 200:
                            started, cpu0 = now, (cpu_s(pid), cpu_s(ferret))
                    elif (done := recorded(await http.get("/metrics"))) >= events:
                        own, db = cpu_s(pid) - cpu0[0], cpu_s(ferret) - cpu0[1]
                        return events / (now - started), own / events, db / events
                except httpx.TransportError:
                    pass  # not listening yet
                if now > deadline:
                    raise RuntimeError(f"the recorder recorded {done:.0f} of {events} events in {timeout:.0f} s")
                await asyncio.sleep(0.02)
    finally:
        recorder.terminate()


def recorded(answer: httpx.Response, kind: str = "events") -> float:
    """Documents written or dead-lettered by the recorder of `kind`, from its Prometheus text."""
    total = 0.0
    for line in answer.text.splitlines():
        if line.startswith(("tributary_hub_recorded_total", "tributary_hub_recorder_dead_lettered_total")) and (
            f'kind="{kind}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def insert_many_rate(env: dict[str, str], docs: list[dict[str, Any]]) -> float:
    client = new_client(env["TRIBUTARY_MONGODB_URL"])
    try:
        collection = client[env["TRIBUTARY_MONGODB_DB"]]["bench_insert_many"]
        start = time.perf_counter()
        for first in range(0, len(docs), BATCH):
            await collection.insert_many(docs[first : first + BATCH], ordered=False)
        return len(docs) / (time.perf_counter() - start)
    finally:
        await client.close()


async def main(args: argparse.Namespace) -> None:
    platform.require_services()
    token = mint_token(SECRET, subject="bench")
    with platform.isolated_env("bench-recorder", SECRET) as isolated:
        env = {**isolated, "TRIBUTARY_LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}
        connection, queue = await capture_queue(env["TRIBUTARY_AMQP_URL"])
        floor_connection, floor_queue = await capture_queue(env["TRIBUTARY_AMQP_URL"], "bench.capture.floor")
        try:
            with hub(env, separate_recorders=True, recorder=False) as url:
                await publish(url, token, args.topics, args.events)
            docs = await captured(queue, args.events)
            floor, floor_cpu = await consume_floor(env["TRIBUTARY_AMQP_URL"], floor_queue, args.events)
        finally:
            await connection.close()
            await floor_connection.close()
        rate, own_cpu, db_cpu = await recorder_rate(env, args.events, args.timeout)
        base = await insert_many_rate(env, docs)
    us = 1e6
    print(
        f"event recorder ({RECEIVER} receiver): {args.events:,} events over {args.topics} topics, drained from RabbitMQ"
    )
    print(f"{'case':<52} {'events/s':>9}  CPU per event")
    print(
        f"{'tributary-hub recorder (queue -> stored, acked)':<52} {rate:>9,.0f}  {own_cpu * us:.0f} us + FerretDB {db_cpu * us:.0f} us"
    )
    print(f"{f'insert_many, {BATCH} per write (the same documents)':<52} {base:>9,.0f}")
    print(f"{f'floor: its receiver ({RECEIVER}) alone, no storing':<52} {floor:>9,.0f}  {floor_cpu * us:.0f} us")
    print(f"ratio recorder / insert_many: {rate / base:.2f} (goal >= 0.8); floor / insert_many: {floor / base:.2f}")
    record("recorder_rate.py", "event recorder vs insert_many", rate, "ev/s", base, ">= 0.8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300.0)
    asyncio.run(main(parser.parse_args()))
