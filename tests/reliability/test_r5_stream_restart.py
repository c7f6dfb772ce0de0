"""R5: the stream process restarted while 100 websocket clients follow a topic at 200 events/s published through
the real hub; every client resumes with `since` (the last id it saw). Wanted: 0 lost, 0 duplicated, order kept per
client. The faults come from outside, as signals to the real processes:

- `sigterm`: the stream drains (close 1012) and exits; the same command is started again on the same port;
- `sigkill`: the stream is killed (no close frame); started again on the same port;
- `sigkill-recorder-lagging`: the same, while the hub's recorder process is stopped (SIGSTOP) from the fault until
  well after the clients have resubscribed, i.e. a recorder lagging more than the stream's replay settle time. With
  a fixed settle, replays went live before history held the events published while the stream was away: those
  were lost. The replay now waits until history holds the live events buffered since the bind.

Prints per run: lost / duplicated / out of order over all clients, how long the stream was away, how long the
clients took to get events again and to catch up with what was published while it was away (median, max).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from tests.reliability.stream_followers import Follower, figures
from tests.support import platform
from tests.support.processes import ServiceProcess
from tests.support.stack import Stack, run_stack

CLIENTS = 100
RATE = 200  # events per second
BATCH = 10  # events per POST, every BATCH / RATE seconds
BEFORE_S = 3.0  # publishing before the fault
AFTER_S = 4.0  # publishing after the stream is back
STALL_S = 15.0  # no client received anything for this long: stop waiting
RECORDER_STOPPED_AFTER_READY_S = 4.0  # lagging variant: the recorder resumes this long after the stream is ready


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = Path(tmp_path_factory.mktemp("r5"))
    # The recorders in their own process (`tributary-hub recorder`, as deployed at scale), so that they can be
    # stopped without stopping the API.
    hub_env = {"hub": {"TRIBUTARY_RECORDERS_ENABLED": "false"}}
    with run_stack(logs, services=("hub", "stream"), per_service=hub_env) as s:
        port = platform.free_port()
        recorder = ServiceProcess(
            "tributary_hub", ["recorder"], {**s.env, "TRIBUTARY_HTTP_PORT": str(port)}, logs / "recorder.log", port
        )
        s.procs["recorder"] = recorder
        try:
            recorder.start(wait=True, timeout=60)
            yield s
        finally:
            if recorder.proc is not None and recorder.proc.poll() is None:
                os.kill(recorder.proc.pid, signal.SIGCONT)
            recorder.terminate()


class Publisher(threading.Thread):
    """POSTs batches of BATCH events at RATE events/s through the hub, one request at a time (so that the publish
    order is the order of the ids); every id answered 202 is kept, in order."""

    def __init__(self, stack: Stack, topic: str) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30)
        self.topic = topic
        self.published: list[str] = []
        self.failures: list[str] = []
        self.until = float("inf")
        self.run_id = uuid.uuid4().hex[:6]

    def run(self) -> None:
        period = BATCH / RATE
        next_at = time.monotonic()
        n = 0
        while time.monotonic() < self.until:
            ids = [f"{self.run_id}-{n + i:07d}" for i in range(BATCH)]
            body = [{"id": eid, "subject": "x", "data": {"v": n + i}} for i, eid in enumerate(ids)]
            r = self.http.post(f"/topics/{self.topic}/events:batch", json=body)
            if r.status_code == 202:
                self.published += ids
            else:
                self.failures.append(f"{r.status_code} {r.text[:200]}")
            n += BATCH
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        self.http.close()


def _restart(stack: Stack, how: str) -> float:
    """Stop the stream process from outside, start it again on the same port; seconds until it is ready."""
    proc = stack.procs["stream"]
    t0 = time.monotonic()
    if how == "sigterm":
        proc.terminate()
    else:
        proc.kill()
    proc.start(wait=False)
    proc.wait_healthy(60, path="/readyz")
    return time.monotonic() - t0


def _signal_recorder(stack: Stack, sig: signal.Signals) -> None:
    proc = stack.procs["recorder"].proc
    assert proc is not None and proc.poll() is None
    os.kill(proc.pid, sig)


@pytest.mark.parametrize("how", ["sigterm", "sigkill", "sigkill-recorder-lagging"])
async def test_r5_stream_restart_loses_nothing(stack: Stack, how: str) -> None:
    topic = f"r5{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}) as http:
        r = await http.post("/topics", json={"name": topic, "schema": {"type": "object", "properties": {"v": {}}}})
        assert r.status_code == 201, r.text
    url = f"{stack.stream_url}/ws"
    # Each client is its own principal, as real clients are (the per-principal cap is not under test here).
    followers = [
        Follower(url, stack.mint(subject=f"r5-{i}", scopes=["events:read"]), f"{topic}.#") for i in range(CLIENTS)
    ]
    tasks = [asyncio.create_task(f.run()) for f in followers]
    lagging = how.endswith("recorder-lagging")
    try:
        await asyncio.wait_for(asyncio.gather(*(f.ready.wait() for f in followers)), 60)
        publisher = Publisher(stack, topic)
        publisher.start()
        await asyncio.sleep(BEFORE_S)
        fault_at = time.monotonic()
        if lagging:
            _signal_recorder(stack, signal.SIGSTOP)
        away_s = await asyncio.to_thread(_restart, stack, how.split("-")[0])
        away_until = publisher.published[-1]  # the last event published while the stream was away
        publisher.until = time.monotonic() + AFTER_S
        if lagging:
            await asyncio.sleep(RECORDER_STOPPED_AFTER_READY_S)
            _signal_recorder(stack, signal.SIGCONT)
        await asyncio.to_thread(publisher.join, AFTER_S + 30)
        assert not publisher.is_alive()
        published = publisher.published
        assert publisher.failures == [], publisher.failures[:3]
        # Everyone gets to the last event, or stops making progress (then the figures say what is missing). No
        # fixed deadline: on a loaded machine the replays just take longer.
        progress, still_at = -1, time.monotonic()
        while any(not f.ids or f.ids[-1] != published[-1] for f in followers):
            total = sum(len(f.ids) for f in followers)
            if total != progress:
                progress, still_at = total, time.monotonic()
            elif time.monotonic() - still_at > STALL_S:
                break
            await asyncio.sleep(0.2)
    finally:
        for f in followers:
            f.stop = True
        await asyncio.wait(tasks, timeout=5)
        for t in tasks:
            t.cancel()

    fig = figures(followers, published)
    resumed = [f.resumed_at[-1] - fault_at for f in followers if f.resumed_at]
    caught_up = [a - fault_at for f in followers if (a := f.arrival(away_until)) is not None and a > fault_at]
    errors = [e for f in followers for e in f.errors]
    told_to_reconnect = sum(f.told_to_reconnect for f in followers)
    gaps = sum(f.gaps for f in followers)
    closes = sorted({c for f in followers for c in f.closes}, key=str)

    def spread(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s" if values else "none"

    print(
        f"\nR5 ({how}): {CLIENTS} clients, {len(published)} events at {RATE}/s through the hub; "
        f"lost {fig.lost} (clients with a loss: {fig.clients_with_loss}), duplicated {fig.duplicated}, "
        f"out of order {fig.out_of_order}; stream away {away_s:.2f} s (fault to ready); after the fault, first event "
        f"again: {spread(resumed)} ({len(resumed)} clients); caught up with what was published while it was away: "
        f"{spread(caught_up)}; close codes {closes}, gaps {gaps}, errors {len(errors)}, "
        f"reconnects refused while draining {told_to_reconnect}"
    )
    assert errors == [], errors[:3]
    assert len(resumed) == CLIENTS, "every client was cut off and came back"
    if fig.duplicated or fig.out_of_order:
        print(await _diagnose(stack, topic, followers, published))
    assert (fig.lost, fig.duplicated, fig.out_of_order) == (0, 0, 0)


async def _diagnose(stack: Stack, topic: str, followers: list[Follower], published: list[str]) -> str:
    """What a run with duplicates or disorder says about where the resume started: the first client's ids around
    its step back, the stored history's order and times there, and where a resume from the same id starts now."""
    rank = {eid: n for n, eid in enumerate(published)}
    f = next(
        (f for f in followers if any(rank.get(b, -1) <= rank.get(a, -1) for a, b in itertools.pairwise(f.ids))), None
    )
    if f is None:
        return "R5 diagnosis: no client stepped back"
    k = next(i for i, (a, b) in enumerate(itertools.pairwise(f.ids)) if rank.get(b, -1) <= rank.get(a, -1))
    last_seen, replay_from = f.ids[k], f.ids[k + 1]
    lines = [
        f"R5 diagnosis: client r5-{followers.index(f)} saw {f.ids[max(0, k - 2) : k + 1]} then {f.ids[k + 1 : k + 4]}"
    ]
    # Which connection the step back came on: the ids that arrived before each disconnect.
    before = [sum(1 for t in f.times if t < lost) for lost in f.lost_at]
    lines.append(
        f"the step is after id #{k} of {len(f.ids)}; ids seen before each disconnect: {before}, "
        f"resumed after: {[f.ids[n - 1] if n else None for n in before]}"
    )
    async with httpx.AsyncClient(
        base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=60
    ) as http:
        r = await http.get(f"/topics/{topic}/events", headers={"Accept": "application/x-ndjson"})
        stored = [orjson.loads(line) for line in r.text.splitlines() if line.strip()]
        order = [e["id"] for e in stored]
        times = {e["id"]: e["time"] for e in stored}
        lines.append(
            f"history: {len(stored)} events, in publish order: {order == [e for e in published if e in times]}; "
            f"time of {last_seen}: {times.get(last_seen)}, of {replay_from}: {times.get(replay_from)}"
        )
        steps = [(a, b) for a, b in itertools.pairwise(stored) if rank.get(b["id"], -1) <= rank.get(a["id"], -1)]
        lines.append(
            f"stored steps back: {len(steps)}: {[(a['id'], a['time'], b['id'], b['time']) for a, b in steps[:3]]}"
        )
    token = stack.mint(subject="r5-diagnosis", scopes=["events:read"])
    async with websockets.connect(
        f"{stack.stream_url}/ws", additional_headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        await ws.send(
            orjson.dumps(
                {"op": "subscribe", "id": "d", "events": {"pattern": f"{topic}.#", "since": last_seen}}
            ).decode()
        )
        first: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):
                while len(first) < 3:
                    frame = orjson.loads(await ws.recv())
                    if frame.get("type") == "event":
                        first.append(frame["event"]["id"])
                    elif frame.get("type") != "subscribed":
                        lines.append(f"frame: {str(frame)[:300]}")
        lines.append(f"a resume after {last_seen} now starts at {first}")
    stream_log = (stack.logs / "stream.log").read_text(errors="replace").splitlines()
    lines += ["stream log, warnings:", *[x[:300] for x in stream_log if "WARNING" in x or "ERROR" in x][-15:]]
    lines.append(f"logs: {stack.logs}")
    return "\n".join(lines)
