"""Publishing clients for the hub's fault tests (R1, R2): each event has its id chosen by the client, and every
request is retried with the same ids until it is answered 202 (after a 503, a timeout or a refused connection),
as a client following the API's contract does. What was answered 202 is what history must hold, exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Tally:
    accepted: set[str] = field(default_factory=set)  # ids answered 202
    retried: int = 0  # requests answered 503 or not answered, then sent again
    statuses: dict[int, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)  # answers that are neither 202 nor 503

    def saw(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def send(
    http: httpx.AsyncClient, topic: str, ids: list[str], tally: Tally, *, deadline: float, batch: bool
) -> None:
    """One request (a single event, or a batch of `ids`), retried until 202 or the deadline."""
    body: Any
    if batch:
        url, body = f"/topics/{topic}/events:batch", [{"id": i, "data": {"i": i}} for i in ids]
    else:
        url, body = f"/topics/{topic}/events", {"id": ids[0], "data": {"i": ids[0]}}
    delay = 0.1
    while True:
        try:
            r = await http.post(url, json=body)
            tally.saw(r.status_code)
            if r.status_code == 202:
                tally.accepted.update(ids)
                return
            if r.status_code != 503:
                tally.unexpected.append(f"{r.status_code} {r.text[:200]}")
                return
        except httpx.TransportError:
            tally.saw(0)
        if time.monotonic() > deadline:
            tally.unexpected.append(f"gave up on {ids[0]}… after the deadline")
            return
        tally.retried += 1
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def history_ids(http: httpx.AsyncClient, topic: str) -> list[str]:
    """Every id in the topic's history, pages of 1000 (a list: a duplicate would show twice)."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        r = await http.get(f"/topics/{topic}/events", params=params)
        r.raise_for_status()
        page = r.json()
        ids += [e["id"] for e in page["items"]]
        cursor = page["next"]
        if cursor is None:
            return ids


async def wait_recorded(
    http: httpx.AsyncClient, topic: str, want: set[str], *, stall_s: float = 30.0
) -> tuple[list[str], float]:
    """History once it holds every id of `want` (or stopped growing for `stall_s`), and when that was."""
    last_count, last_change = -1, time.monotonic()
    while True:
        try:
            ids = await history_ids(http, topic)
        except httpx.HTTPError:
            ids = []
        now = time.monotonic()
        if want <= set(ids):
            return ids, now
        if len(ids) != last_count:
            last_count, last_change = len(ids), now
        elif now - last_change > stall_s:
            return ids, now
        await asyncio.sleep(0.25)


def figures(ids: list[str], accepted: set[str]) -> tuple[int, int]:
    """(lost, duplicated): ids answered 202 missing from history, and extra copies of any id in history."""
    return len(accepted - set(ids)), len(ids) - len(set(ids))


async def publish_with_fault(
    http: httpx.AsyncClient,
    topic: str,
    prefix: str,
    fault: Callable[[], Awaitable[None]],
    *,
    events: int = 10_000,
    single: int = 2_000,
    batch: int = 100,
    clients_per_mode: int = 4,
    fault_at: float = 0.25,
    deadline_s: float = 150,
) -> tuple[Tally, float, float]:
    """`events` events with ids `<prefix>-NNNNN`: `clients_per_mode` clients send the first `single` one by one,
    as many send the rest in batches of `batch`; `fault` runs once `fault_at` of them were accepted. Returns the
    tally and when publishing started and ended (`time.monotonic()`); the fault is over by the return."""
    ids = [f"{prefix}-{n:05d}" for n in range(events)]
    singles = [[i] for i in ids[:single]]
    batches = [ids[k : k + batch] for k in range(single, events, batch)]
    tally = Tally()
    deadline = time.monotonic() + deadline_s

    async def client(work: list[list[str]], batched: bool) -> None:
        for chunk in work:
            await send(http, topic, chunk, tally, deadline=deadline, batch=batched)

    async def strike() -> None:
        while len(tally.accepted) < fault_at * events:  # noqa: ASYNC110 - polls a plain counter
            await asyncio.sleep(0.05)
        await fault()

    started = time.monotonic()
    fault_task = asyncio.create_task(strike())
    await asyncio.gather(
        *(client(singles[k::clients_per_mode], False) for k in range(clients_per_mode)),
        *(client(batches[k::clients_per_mode], True) for k in range(clients_per_mode)),
    )
    published = time.monotonic()
    await fault_task
    return tally, started, published
