"""A RabbitMQ cluster losing the node that leads the recorders' queue during a 10,000-event publish.

Three private nodes on loopback (own names, ports and data folders; the shared node is never touched) are
clustered by the test; a `tributary-hub serve` process (recorders in-process) gets the three URLs. 8 clients
publish 10,000 events with their own ids (4 single, 4 in batches of 100), each request retried with the same ids
after a 503 or no answer (tests/reliability/hub_clients.py). When a quarter is accepted, the node leading
`tributary.hub.recorder.events` is killed (SIGKILL: a node lost, no hand-over). Wanted: every event answered
202 is in history exactly once, nothing but 202 and 503 was answered, the queue has a new leader among the
others, and the hub carries on through them (ready again, and a later event is accepted and recorded).

Prints: accepted, lost, duplicated, statuses, the leaders before and after, how long publishing and recording took.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability.hub_clients import Tally, figures, publish_with_fault, send, wait_recorded
from tests.support.processes import ServiceProcess
from tests.support.rabbit_cluster import Cluster, rabbit_cluster
from tests.support.stack import MINT, serving_hub
from tributary_common.amqp import HUB_RECORDER_EVENTS

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

EVENTS = 10_000


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with rabbit_cluster(3, prefix="tq") as nodes:
        yield nodes


@pytest.fixture
def hub(cluster: Cluster, tmp_path: Path) -> Iterator[ServiceProcess]:
    # A publish the cluster cannot confirm (its queue electing a new leader) is a 503 after 3 s.
    with serving_hub(cluster.urls, tmp_path, "cl", {"TRIBUTARY_PUBLISH_TIMEOUT_S": "3"}) as proc:
        yield proc


def _leader(cluster: Cluster) -> str:
    info = cluster.queue(HUB_RECORDER_EVENTS.name)
    assert info["type"] == "quorum"
    return str(info["leader"])


async def _until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):  # type: ignore[arg-type]
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {timeout} s: {what}")


async def scenario(base: str, token: str, cluster: Cluster) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=10)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15, limits=limits) as http:
        topic = f"cl{uuid.uuid4().hex[:8]}"
        r = await http.post("/topics", json={"name": topic, "schema": {"type": "object"}})
        assert r.status_code == 201, r.text
        members = cluster.queue(HUB_RECORDER_EVENTS.name)["members"]
        assert sorted(members) == sorted(n.node for n in cluster.nodes)  # replicated on all three
        leader = _leader(cluster)

        async def fault() -> None:
            cluster.kill(cluster.node(leader))

        tally, started, published = await publish_with_fault(http, topic, "cl", fault)
        assert tally.unexpected == [], tally.unexpected[:5]
        await _until(lambda: _leader(cluster) != leader, 30, "a new leader for the recorders' queue")
        after = _leader(cluster)

        # The hub carries on through the other nodes: ready, and a later event is accepted (and recorded below).
        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        for _ in range(60):
            if await ready():
                break
            await asyncio.sleep(0.5)
        assert await ready()
        later = Tally()
        await send(http, topic, ["cl-later"], later, deadline=time.monotonic() + 30, batch=False)
        assert later.accepted == {"cl-later"}, later.unexpected

        history, recorded = await wait_recorded(http, topic, tally.accepted | later.accepted)
        lost, duplicated = figures(history, tally.accepted | later.accepted)
        print(
            f"\nRabbitMQ cluster, leader {leader} killed: {len(tally.accepted)} events answered 202, lost {lost}, "
            f"duplicated {duplicated}; {tally.retried} requests retried (statuses "
            f"{dict(sorted(tally.statuses.items()))}); new leader {after}; published in {published - started:.1f} s, "
            f"all recorded {recorded - published:.1f} s later"
        )
        assert len(tally.accepted) == EVENTS
        assert (lost, duplicated) == (0, 0)
        assert after in {n.node for n in cluster.running()}


def test_losing_the_queue_leader_during_a_10000_event_publish(cluster: Cluster, hub: ServiceProcess) -> None:
    asyncio.run(scenario(f"http://127.0.0.1:{hub.port}", MINT(subject="cluster"), cluster))
