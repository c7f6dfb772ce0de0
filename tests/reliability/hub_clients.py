"""Publishing clients for the hub's fault tests (R1, R2): each event has its id chosen by the client, and every
request is retried with the same ids until it is answered 202 (after a 503, a timeout or a refused connection),
as a client following the API's contract does. What was answered 202 is what history must hold, exactly once."""

from __future__ import annotations

import asyncio
import time
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
