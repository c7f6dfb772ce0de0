"""R2: the database stopped for 30 s while events are published through the real hub.

A private FerretDB process (never the shared one) serves a `tributary-hub serve` process (recorders in-process) on
the shared RabbitMQ (own vhost). Two clients publish steadily (single events and batches, retrying 503s with the
same ids); the FerretDB process is killed from outside (SIGKILL: a graceful stop may keep serving the open
connections for a while) and started again 30 s later on the same data.
Wanted: 0 lost (every event answered 202 in history, once), `/readyz` red during the outage and green after, and
the recorder catching up once the database is back.

Prints: accepted, lost, duplicated, what /readyz answered during the outage, the publish answers during it, and
the catch-up time (database back → history holds every accepted event).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pymongo
import pymongo.errors
import pytest

from tests.reliability.hub_clients import Tally, figures, send, wait_recorded
from tests.support import platform
from tests.support.ferretdb import PrivateFerretDB
from tests.support.processes import ServiceProcess
from tests.support.stack import MINT, serving_hub

pytestmark = pytest.mark.timeout(300)

OUTAGE_S = 30.0
BEFORE_S = 3.0
AFTER_S = 3.0
BATCH = 20
PERIOD_S = 0.1  # each client sends one request per period: about 10 single + 200 batched events/s


@pytest.fixture
def database(tmp_path: Path) -> Iterator[PrivateFerretDB]:
    db = PrivateFerretDB(tmp_path / "ferret")
    db.start()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture
def hub(database: PrivateFerretDB, tmp_path: Path) -> Iterator[ServiceProcess]:
    platform.require_services()
    vhost = platform.unique("r2")
    try:
        database_env = {
            "TRIBUTARY_MONGODB_URL": database.url,
            "TRIBUTARY_MONGODB_DB": "r2",
            "TRIBUTARY_MONGODB_TIMEOUT_MS": "2000",
        }
        with serving_hub(platform.create_vhost(vhost), tmp_path, "r2", database_env) as proc:
            yield proc
    finally:
        platform.delete_vhost(vhost)


def kill(database: PrivateFerretDB) -> None:
    assert database.proc is not None
    database.proc.kill()
    database.proc.wait()
    database.proc = None
    assert not platform.port_open(database.port)


def diagnose(database: PrivateFerretDB, hub: ServiceProcess) -> str:
    """Why nothing was recorded: whether the database answers a client of its own, and where the hub's tasks wait."""
    t0 = time.monotonic()
    client: pymongo.MongoClient[dict[str, object]]
    try:
        with pymongo.MongoClient(database.url, serverSelectionTimeoutMS=5000, socketTimeoutMS=10_000) as client:
            client.admin.command("ping")
            answer = f"answers a new client's ping in {time.monotonic() - t0:.2f} s"
    except pymongo.errors.PyMongoError as exc:
        answer = f"does not answer a new client ({type(exc).__name__}: {str(exc)[:300]})"
    return f"R2 diagnosis: the database {answer}; its log:\n{database.tail()}\nhub {hub.task_dump()}"


async def scenario(base: str, token: str, database: PrivateFerretDB, hub: ServiceProcess) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as http:
        topic = f"r2{uuid.uuid4().hex[:8]}"
        r = await http.post("/topics", json={"name": topic, "schema": {"type": "object"}})
        assert r.status_code == 201, r.text
        tally = Tally()
        stop_publishing = asyncio.Event()
        deadline = time.monotonic() + 120
        counter = iter(range(10**9))

        async def client(batch: bool) -> None:
            while not stop_publishing.is_set():
                size = BATCH if batch else 1
                ids = [f"r2-{'b' if batch else 's'}-{next(counter):06d}" for _ in range(size)]
                sent = time.monotonic()
                await send(http, topic, ids, tally, deadline=deadline, batch=batch)
                await asyncio.sleep(max(0.0, PERIOD_S - (time.monotonic() - sent)))

        readyz: dict[int, int] = {}
        during: dict[str, int] = {}

        async def watch_readyz(until: asyncio.Event) -> None:
            while not until.is_set():
                try:
                    status = (await http.get("/readyz", timeout=5)).status_code
                except httpx.HTTPError:
                    status = 0
                readyz[status] = readyz.get(status, 0) + 1
                await asyncio.sleep(0.5)

        publishers = [asyncio.create_task(client(False)), asyncio.create_task(client(True))]
        await asyncio.sleep(BEFORE_S)
        accepted_before = len(tally.accepted)
        statuses_before = dict(tally.statuses)
        await asyncio.to_thread(kill, database)
        outage_over = asyncio.Event()
        watcher = asyncio.create_task(watch_readyz(outage_over))
        await asyncio.sleep(OUTAGE_S)
        outage_over.set()
        await watcher
        during = {str(k): v - statuses_before.get(k, 0) for k, v in tally.statuses.items()}
        accepted_during = len(tally.accepted) - accepted_before
        await asyncio.to_thread(database.start)
        back = time.monotonic()
        await asyncio.sleep(AFTER_S)
        stop_publishing.set()
        await asyncio.gather(*publishers)
        assert tally.unexpected == [], tally.unexpected[:5]
        history, recorded = await wait_recorded(http, topic, tally.accepted, stall_s=40)
        lost, duplicated = figures(history, tally.accepted)
        ready_after = (await http.get("/readyz")).status_code
        print(
            f"\nR2 database outage {OUTAGE_S:.0f} s: {len(tally.accepted)} events answered 202 "
            f"({accepted_during} during the outage; answers then {during}), lost {lost}, duplicated {duplicated}; "
            f"/readyz during the outage {readyz}, after {ready_after}; catch-up {recorded - back:.1f} s "
            f"after the database was back"
        )
        if lost or ready_after != 200:
            print(await asyncio.to_thread(diagnose, database, hub))
        assert (lost, duplicated) == (0, 0)
        assert readyz.get(503, 0) > 0 and readyz.get(200, 0) <= 1, readyz  # red (one green read at the edge)
        assert ready_after == 200
        assert accepted_during > 0  # publishing went on while the database was away


def test_r2_database_stopped_for_30_s_while_publishing(database: PrivateFerretDB, hub: ServiceProcess) -> None:
    asyncio.run(scenario(f"http://127.0.0.1:{hub.port}", MINT(subject="r2"), database, hub))
