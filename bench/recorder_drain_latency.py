"""The API's latency while the recorders in its process drain a backlog, against the same hub idle (the recorders
run in the hub's process by default, so every stretch a recorder holds the event loop is waited for by requests).

A hub with its recorders off publishes `--events` events (batches of 100 over `--topics` topics, as
`recorder_rate.py` does), which wait in the recorder's queue; then, in a database and vhost of their own,
`--samples` samples, as batches of 1,000 of one sid at 1 Hz (`samples_store.py`'s) straight to `tributary.samples`
(`--kinds` picks either). A hub with its recorders in its process (the
default) is then started on that backlog: while it drains, `wrk` (`-c4`, light: the latency is the loop's, not a
queue of requests) reads `GET /topics/rec0` for `--seconds`; once every event is recorded, the same load again.
Reports p50/p99/max latency of both and how much the recorder stored while the first load ran.
`.venv/bin/python bench/recorder_drain_latency.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import aio_pika
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_publish import SECRET, hub, in_ms, latency  # noqa: E402
from bench.recorder_rate import publish, recorded  # noqa: E402
from bench.samples_store import bodies  # noqa: E402
from tests.support import platform  # noqa: E402
from tributary_common.auth import mint_token  # noqa: E402


def wrk_get(url: str, token: str, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{seconds:g}s", "--latency", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    top = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    assert top is not None and "Non-2xx" not in out, out
    return {
        "req/s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": latency(out, "50%"),
        "p99": latency(out, "99%"),
        "max": in_ms(top.group(1), top.group(2)),
    }


async def count(base: str, kind: str) -> float:
    """Documents the recorder of `kind` wrote or dead-lettered (its Prometheus counters)."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        return recorded(await http.get("/metrics"), kind)


async def publish_samples(amqp_url: str, samples: int) -> None:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("tributary.samples")
    for body in bodies("drain", samples):
        await exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "simulator.drain"
        )
    await connection.close()


async def drain(kind: str, backlog: int, args: argparse.Namespace) -> None:
    """One hub's database and vhost: the backlog published, then the latencies while it drains and after."""
    token = mint_token(SECRET, subject="bench")
    with platform.isolated_env("bench-drain", SECRET) as isolated:
        env = {**isolated, "TRIBUTARY_LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}
        with hub(env, separate_recorders=True, recorder=False) as url:
            if kind == "events":
                await publish(url, token, args.topics, backlog)
            else:
                await publish(url, token, 1, 100)  # the topic read below
                await publish_samples(env["TRIBUTARY_AMQP_URL"], backlog)
        with hub(env, separate_recorders=False) as url:
            base = url.removesuffix("/topics/bench/events")
            target = f"{base}/topics/rec0"
            before = await count(base, kind)
            draining = wrk_get(target, token, args.seconds)
            during = await count(base, kind) - before
            deadline = time.monotonic() + 300
            while await count(base, kind) < backlog and time.monotonic() < deadline:  # noqa: ASYNC110  (a counter in another process)
                await asyncio.sleep(0.2)
            idle = wrk_get(target, token, args.seconds)
    what = f"{backlog:,} samples" if kind == "samples" else f"{backlog:,} events over {args.topics} topics"
    print(f"\nGET /topics/rec0, wrk -c4, {args.seconds:g} s; backlog {what}")
    print(f"{'case':<36} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for name, r in (("while the recorder drains", draining), ("idle, after the drain", idle)):
        print(f"{name:<36} {r['req/s']:>7,.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.1f}")
    print(f"{kind} recorded while the first load ran: {during:,.0f} of {backlog:,} (the drain must outlast it)")


async def main(args: argparse.Namespace) -> None:
    platform.require_services()
    for kind in args.kinds:
        await drain(kind, args.events if kind == "events" else args.samples, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--samples", type=int, default=2_400_000)
    parser.add_argument("--kinds", nargs="+", choices=["events", "samples"], default=["events", "samples"])
    asyncio.run(main(parser.parse_args()))
