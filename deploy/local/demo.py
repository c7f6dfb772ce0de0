"""The `make up` demo: seeds a `sensor-reading` topic and a `pump-101` unitop of simulator items, prints how
to watch them, then publishes a reading every two seconds until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import sys

import httpx

from tributary_client import HubClient, TributaryError
from tributary_common.auth import mint_token
from tributary_common.settings import CommonSettings

HUB = os.environ.get("TRIBUTARY_HUB_URL", "http://127.0.0.1:8000")
STREAM = os.environ.get("TRIBUTARY_STREAM_URL", "ws://127.0.0.1:8001")

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["value", "unit"],
    "properties": {
        "value": {"type": "number"},
        "unit": {"type": "string", "enum": ["C", "bar", "m3/h"]},
        "quality": {"type": "string", "enum": ["good", "uncertain", "bad"]},
    },
    "additionalProperties": False,
}

PUMP = {
    "name": "pump-101",
    "items": {
        "flow": {
            "source": "simulator",
            "params": {"signal": "sine", "amplitude": 5, "offset": 40, "period_s": 60},
        },
        "pressure": {
            "source": "simulator",
            "params": {"signal": "random_walk", "seed": 101, "offset": 6},
        },
        "running": {"source": "simulator", "params": {"signal": "step", "period_s": 30}},
    },
    "meta": {"site": "plant1", "kind": "pump"},
    "record": True,
}


async def wait_ready(url: str, timeout: float = 120) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(int(timeout * 2)):
            try:
                if (await http.get(f"{url}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    sys.exit(f"demo: {url} did not become ready")


async def seed(hub: HubClient) -> None:
    try:
        await hub.create_topic("sensor-reading", SCHEMA, description="Readings from the demo publisher")
    except TributaryError as exc:
        if exc.status != 409:
            raise
    # Unitop items are validated against the source's announced model: wait for ingest to announce `simulator`.
    for _ in range(120):
        if any(s.get("name", s.get("source")) == "simulator" for s in await hub.sources()):
            break
        await asyncio.sleep(0.5)
    try:
        await hub.create_unitop(PUMP)
    except TributaryError as exc:
        if exc.status != 409:
            raise


def banner(token: str) -> str:
    return f"""
================================================================================
 Tributary is running.
   hub API      {HUB}/docs
   stream       {STREAM.replace("ws", "http", 1)}/ws  (websocket; SSE at /events/<pattern>)
   RabbitMQ UI  http://127.0.0.1:15672  (guest / guest)

 In another terminal:
   export TRIBUTARY_TOKEN={token}
   .venv/bin/tributary tail 'sensor-reading.#'        # the demo's events, live
   .venv/bin/tributary tail --unitop pump-101         # simulator samples of pump-101
   .venv/bin/tributary publish sensor-reading '{{"value": 21.5, "unit": "C"}}' --subject plant1.line3
   .venv/bin/tributary history sensor-reading --subject 'plant1.#'
 Ctrl-C here stops everything.
================================================================================
""".rstrip()


async def main() -> None:
    token = mint_token(CommonSettings().jwt_secret.get_secret_value(), subject="demo")
    await wait_ready(HUB)
    async with HubClient(HUB, token) as hub:
        await seed(hub)
        print(banner(token), flush=True)
        rng = random.Random(7)
        n = 0
        while True:
            n += 1
            line = f"line{1 + n % 3}"
            value = round(60 + 5 * math.sin(n / 10) + rng.uniform(-0.5, 0.5), 2)
            try:
                await hub.publish(
                    "sensor-reading", {"value": value, "unit": "C", "quality": "good"}, subject=f"plant1.{line}"
                )
            except (TributaryError, httpx.HTTPError) as exc:
                print(f"demo: publish failed: {exc}", flush=True)
            await asyncio.sleep(2)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
