"""R1: RabbitMQ stopped and restarted during a 10,000-event publish by concurrent clients, through the real hub.

A private RabbitMQ node (never the shared one) serves a `tributary-hub serve` process (recorders in-process);
8 clients publish 10,000 events with their own ids: 4 send single events (2,000), 4 send batches of 100 (8,000).
Every request answered 503 (or not answered: a timeout, a refused connection) is sent again with the same ids
until it is answered 202. When a quarter of the events have been accepted, the node is stopped from outside
(`services.sh down`) and started again. Wanted: every event answered 202 is in history exactly once.

Prints: accepted, lost, duplicated, how long the broker was away, the requests retried, how long publishing and
recording took.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.hub_clients import figures, publish_with_fault, wait_recorded
from tests.support.processes import ServiceProcess
from tests.support.rabbitmq import PrivateRabbit, private_rabbit
from tests.support.stack import MINT, serving_hub

pytestmark = pytest.mark.timeout(300)

EVENTS = 10_000
SINGLE = 2_000
BATCH = 100
CLIENTS_PER_MODE = 4
FAULT_AT = 0.25  # of the events accepted
DOWN_S = 3.0  # the node stays down at least this long (stopping and starting take longer)


@pytest.fixture
def rabbit() -> Iterator[PrivateRabbit]:
    with private_rabbit("r1") as node:
        yield node


@pytest.fixture
def hub(rabbit: PrivateRabbit, tmp_path: Path) -> Iterator[ServiceProcess]:
    # A publish the broker cannot confirm is a 503 after 3 s (the client then retries).
    with serving_hub(rabbit.url, tmp_path, "r1", {"TRIBUTARY_PUBLISH_TIMEOUT_S": "3"}) as proc:
        yield proc


async def scenario(base: str, token: str, rabbit: PrivateRabbit) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=2 * CLIENTS_PER_MODE + 2)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15, limits=limits) as http:
        topic = f"r1{uuid.uuid4().hex[:8]}"
        r = await http.post("/topics", json={"name": topic, "schema": {"type": "object"}})
        assert r.status_code == 201, r.text
        outage: dict[str, float] = {}

        async def fault() -> None:
            outage["down"] = time.monotonic()
            await asyncio.to_thread(rabbit.run, "down")
            await asyncio.sleep(DOWN_S)
            await asyncio.to_thread(rabbit.run, "up")
            outage["up"] = time.monotonic()

        # The broker is back before history is read.
        tally, started, published = await publish_with_fault(
            http,
            topic,
            "r1",
            fault,
            events=EVENTS,
            single=SINGLE,
            batch=BATCH,
            clients_per_mode=CLIENTS_PER_MODE,
            fault_at=FAULT_AT,
        )
        assert tally.unexpected == [], tally.unexpected[:5]
        history, recorded = await wait_recorded(http, topic, tally.accepted)
        lost, duplicated = figures(history, tally.accepted)
        print(
            f"\nR1 broker restart: {len(tally.accepted)} events answered 202, lost {lost}, duplicated {duplicated}; "
            f"broker away {outage['up'] - outage['down']:.1f} s; {tally.retried} requests retried "
            f"(statuses {dict(sorted(tally.statuses.items()))}); published in {published - started:.1f} s, "
            f"all recorded {recorded - max(published, outage['up']):.1f} s later"
        )
        assert len(tally.accepted) == EVENTS
        assert (lost, duplicated) == (0, 0)
        assert tally.retried > 0  # the fault did hit the publishers


def test_r1_broker_restart_during_a_10000_event_publish(rabbit: PrivateRabbit, hub: ServiceProcess) -> None:
    asyncio.run(scenario(f"http://127.0.0.1:{hub.port}", MINT(subject="r1"), rabbit))
