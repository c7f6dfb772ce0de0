"""R6: 10,000 malformed websocket frames from several connections against the real stream process: random bytes (as
binary and as text), invalid UTF-8 in text frames, deep nesting, wrong types, huge ids, unknown ops, frames over the
frame limit and over the transport limit. Wanted: the process stays up, its RSS stays bounded, and another client
following a topic meanwhile gets every event in order, with no gap.

Every frame is really processed, not dropped by the inbound rate limit: each attacking connection sends in lockstep
(the next frame once the previous one was answered, or closed the connection as it must: 1007 for invalid UTF-8,
1009 over `WS_MAX_BYTES`) and below `WS_FRAMES_PER_S`; a frame answered `rate_limited`, or whose connection the
limiter closed, is sent again on a new connection. Prints: frames answered / closing, resends, RSS before, peak and
after with the growth, and what the observer received.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.bus import Bus
from tests.support.stack import Stack, run_stack

FRAMES = 10_000
ATTACKERS = 20
FLOODERS = 2
PER_CONNECTION_RATE = 80.0  # frames/s, below the stream's 100/s
MAX_FRAME_BYTES = 64 * 1024  # the stream's defaults
WS_MAX_BYTES = 1024 * 1024
PUBLISH_RATE = 100  # events/s for the observer
RSS_GROWTH_MAX_MB = 64

# A frame: (kind, payload, how it is sent, whether it must close the connection)
Frame = tuple[str, bytes, str, bool]


def _nest(depth: int) -> str:
    return "[" * depth + "]" * depth


def malformed_frames(seed: int = 6) -> list[Frame]:
    """FRAMES hostile frames, reproducible, shuffled."""
    rnd = random.Random(seed)
    out: list[Frame] = []

    def text(kind: str, value: object | str, n: int) -> None:
        for _ in range(n):
            raw = value() if callable(value) else value
            body = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
            out.append((kind, body.encode(), "text", False))

    for _ in range(1800):
        out.append(("random_binary", rnd.randbytes(rnd.randint(1, 2048)), "binary", False))
    text("random_text", lambda: "".join(chr(rnd.randint(32, 0x2FFF)) for _ in range(rnd.randint(1, 512))), 1800)
    for _ in range(40):
        out.append(("invalid_utf8", b'{"op": "ping", "id": "\xff\xfe\xc3\x28"}', "raw_text", True))
    text("deep_nesting", lambda: _nest(rnd.randint(1000, 30_000)), 400)
    text("deep_in_frame", lambda: '{"op":"subscribe","id":"d","events":{"pattern":' + _nest(5000) + "}}", 400)
    text("deep_objects", lambda: '{"a":' * 3000 + "1" + "}" * 3000, 200)
    wrong_types: list[object] = [
        {"op": 5},
        {"op": None},
        {"op": ["subscribe"]},
        {"op": "subscribe", "id": 7, "events": {"pattern": "a.#"}},
        {"op": "subscribe", "id": "w", "events": "a.#"},
        {"op": "subscribe", "id": "w", "events": {"pattern": 3}},
        {"op": "subscribe", "id": "w", "events": {"pattern": "a..b"}},
        {"op": "subscribe", "id": "w", "events": {"pattern": "a.#", "since": {"time": 5}}},
        {"op": "subscribe", "id": "w", "unitop": {"name": {"x": 1}}},
        {"op": "subscribe", "id": "w", "unitop": {"name": "p", "items": "flow"}},
        {"op": "subscribe", "id": "w"},
        {"op": "subscribe", "id": "w", "events": {"pattern": "a.#"}, "unitop": {"name": "p"}},
        {"op": "unsubscribe", "id": ["w"]},
        {"op": "unsubscribe", "id": "never-subscribed"},
        {"op": "ping", "id": {"nested": True}},
        [1, 2, 3],
        "just a string",
        12345,
        None,
        True,
    ]
    for i in range(2500):
        text("wrong_type", wrong_types[i % len(wrong_types)], 1)
    text("huge_id", lambda: {"op": "ping", "id": "x" * rnd.randint(129, 60_000)}, 600)
    text("huge_number_id", lambda: '{"op":"ping","id":' + "9" * rnd.randint(30, 4000) + "}", 200)
    text("huge_int_id", '{"op":"unsubscribe","id":1' + "0" * 30 + "}", 200)
    text(
        "unknown_op",
        lambda: {"op": rnd.choice(["delete", "SUBSCRIBE", "", "publish", "π", "x" * 500]), "id": "u"},
        1700,
    )
    text("over_frame_limit", lambda: {"op": "ping", "id": "y" * (MAX_FRAME_BYTES + rnd.randint(1, 100_000))}, 140)
    for _ in range(10):
        out.append(("over_transport_limit", b"z" * (WS_MAX_BYTES + 1024), "text", True))
    text(
        "odd_ping",
        lambda: {"op": "ping", "id": "".join(chr(rnd.randint(0x80, 0xD7FF)) for _ in range(8))},
        10,
    )
    assert len(out) >= FRAMES, len(out)
    out = out[:FRAMES]
    rnd.shuffle(out)
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@dataclass
class Tally:
    answered: Counter[str] = field(default_factory=Counter)  # error code (or pong) -> frames
    closed: Counter[int | None] = field(default_factory=Counter)  # close code of frames that must close
    resent: int = 0
    unexpected: list[str] = field(default_factory=list)
    connections: int = 0


class Attacker:
    def __init__(self, url: str, token: str, frames: list[Frame], tally: Tally) -> None:
        self.url = url
        self.token = token
        self.frames = frames
        self.tally = tally

    async def _connect(self) -> ClientConnection:
        for _ in range(50):
            try:
                ws = await websockets.connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    max_size=None,
                    open_timeout=10,
                    ping_interval=None,
                )
                self.tally.connections += 1
                return ws
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
                await asyncio.sleep(0.2)
        raise AssertionError("cannot connect to the stream")

    async def run(self) -> None:
        ws = await self._connect()
        period = 1 / PER_CONNECTION_RATE
        next_at = time.monotonic()
        i = 0
        while i < len(self.frames):
            kind, payload, how, closes = self.frames[i]
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + period, time.monotonic() - 1)
            closed, code, answer = False, None, ""
            try:
                if how == "binary":
                    await ws.send(payload)
                else:
                    # raw bytes in a text frame: the stream must check UTF-8 itself
                    await ws.send(payload, text=True)
                answer = await self._answer(ws)
            except websockets.exceptions.ConnectionClosed as exc:
                closed, code = True, exc.rcvd.code if exc.rcvd is not None else None
            if closed:
                ws = await self._reconnect(ws)
                if closes:
                    self.tally.closed[code] += 1
                elif code == 1008:  # the rate limiter: this frame was not processed, send it again
                    self.tally.resent += 1
                    continue
                else:
                    self.tally.unexpected.append(f"{kind}: connection closed with {code}")
            elif answer == "rate_limited":
                self.tally.resent += 1
                await asyncio.sleep(1.0)
                continue
            elif closes:
                self.tally.unexpected.append(f"{kind}: answered {answer} instead of closing")
            else:
                self.tally.answered[answer] += 1
            i += 1
        await ws.close()

    async def _reconnect(self, ws: ClientConnection) -> ClientConnection:
        with contextlib.suppress(TimeoutError, websockets.exceptions.WebSocketException, OSError):
            await asyncio.wait_for(ws.close(), 2)
        return await self._connect()

    async def _answer(self, ws: ClientConnection) -> str:
        """The reply to the frame just sent: its error code, or "pong" (ConnectionClosed when it closed)."""
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame.get("type") == "pong":
            return "pong"
        if frame.get("type") == "error":
            return str(frame.get("code"))
        return f"unexpected frame {frame.get('type')}"


@dataclass
class Flooder:
    """An abusive client: pings as fast as it can send them, besides the counted frames. The inbound rate limit closes
    it (1008, `rate_limited`); it reconnects and goes on until told to stop."""

    url: str
    token: str
    sent: int = 0
    rate_limited: int = 0
    closes: Counter[int | None] = field(default_factory=Counter)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with websockets.connect(
                self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, ping_interval=None
            ) as ws:
                reading = asyncio.create_task(self._read(ws))
                try:
                    while not stop.is_set():
                        await ws.send(f'{{"op":"ping","id":"f{self.sent}"}}')
                        self.sent += 1
                        if self.sent % 50 == 0:
                            await asyncio.sleep(0)  # the reader's turn
                except websockets.exceptions.ConnectionClosed:
                    pass
                await asyncio.wait([reading], timeout=5)
                reading.cancel()
                self.closes[ws.close_code] += 1

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async for raw in ws:
                if b'"rate_limited"' in (raw if isinstance(raw, bytes) else raw.encode()):
                    self.rate_limited += 1


@dataclass
class Observer:
    url: str
    token: str
    pattern: str
    ids: list[str] = field(default_factory=list)
    others: list[dict[str, object]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_wanted: str | None = None
    got_last: asyncio.Event = field(default_factory=asyncio.Event)
    stop: bool = False

    async def run(self) -> None:
        async with websockets.connect(
            self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, max_size=None
        ) as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "id": "o", "events": {"pattern": self.pattern}}).decode())
            while not self.stop:
                try:
                    frame = orjson.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if frame.get("type") == "subscribed":
                    self.ready.set()
                elif frame.get("type") == "event":
                    self.ids.append(frame["event"]["id"])
                    if self.ids[-1] == self.last_wanted:
                        self.got_last.set()
                else:
                    self.others.append(frame)


async def publish(amqp_url: str, topic: str, stop: asyncio.Event) -> list[str]:
    """Events straight to the broker at PUBLISH_RATE (the stream alone is under test), ids in publish order."""
    ids: list[str] = []
    async with Bus(amqp_url, collect=False) as bus:
        next_at = time.monotonic()
        while not stop.is_set():
            eid = f"r6-{len(ids):06d}"
            envelope = {
                "specversion": "1.0",
                "id": eid,
                "source": "r6",
                "type": topic,
                "subject": "x",
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
                "data": {"n": len(ids)},
            }
            await bus.raw("tributary.events", f"{topic}.x", orjson.dumps(envelope))
            ids.append(eid)
            next_at += 1 / PUBLISH_RATE
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return ids


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(Path(tmp_path_factory.mktemp("r6")), services=("stream",)) as s:
        yield s


async def test_r6_malformed_frames_leave_the_stream_up_bounded_and_others_served(stack: Stack) -> None:
    proc = stack.procs["stream"].proc
    assert proc is not None
    url = f"{stack.stream_url}/ws"
    topic = f"r6{uuid.uuid4().hex[:8]}"
    frames = malformed_frames()
    observer = Observer(url, stack.mint(subject="r6-observer", scopes=["events:read"]), f"{topic}.#")
    watching = asyncio.create_task(observer.run())
    await asyncio.wait_for(observer.ready.wait(), 30)
    stop_publishing = asyncio.Event()
    publishing = asyncio.create_task(publish(stack.env["TRIBUTARY_AMQP_URL"], topic, stop_publishing))
    await asyncio.sleep(1.0)  # warm: the publish path and the observer's socket are in use
    rss_before = rss_mb(proc.pid)
    peak = rss_before

    async def sample_rss() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_mb(proc.pid))
            await asyncio.sleep(0.25)

    sampling = asyncio.create_task(sample_rss())
    tally = Tally()
    shares = [frames[i::ATTACKERS] for i in range(ATTACKERS)]
    attackers = [
        Attacker(url, stack.mint(subject=f"r6-attacker-{i}", scopes=["events:read"]), share, tally)
        for i, share in enumerate(shares)
    ]
    flooders = [Flooder(url, stack.mint(subject=f"r6-flooder-{i}", scopes=["events:read"])) for i in range(FLOODERS)]
    stop_flooding = asyncio.Event()
    flooding = [asyncio.create_task(f.run(stop_flooding)) for f in flooders]
    started = time.monotonic()
    try:
        await asyncio.gather(*(a.run() for a in attackers))
    finally:
        took = time.monotonic() - started
        stop_flooding.set()
        await asyncio.wait(flooding, timeout=10)
        stop_publishing.set()
        published = await publishing
        sampling.cancel()
    # The observer gets the last event, then stops.
    observer.last_wanted = published[-1]
    if published[-1] not in observer.ids:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(observer.got_last.wait(), 30)
    observer.stop = True
    await asyncio.wait_for(watching, 10)
    await asyncio.sleep(1.0)  # let the stream free what the attack left
    rss_after = rss_mb(proc.pid)

    answered = sum(tally.answered.values())
    closing = sum(tally.closed.values())
    order_kept = observer.ids == sorted(observer.ids)
    print(
        f"\nR6: {FRAMES} malformed frames over {ATTACKERS} connections ({tally.connections} connections in all) in "
        f"{took:.1f} s: {answered} answered ({dict(tally.answered.most_common())}), {closing} closed the connection "
        f"as they must ({dict(tally.closed)}), {tally.resent} resent after the rate limiter, "
        f"{len(tally.unexpected)} unexpected; {FLOODERS} flooders sent {sum(f.sent for f in flooders)} pings, "
        f"were told rate_limited {sum(f.rate_limited for f in flooders)} times and closed "
        f"{dict(sum((f.closes for f in flooders), Counter()))}; stream RSS {rss_before:.1f} MB before, peak {peak:.1f} MB, "
        f"{rss_after:.1f} MB after (growth {rss_after - rss_before:+.1f} MB, peak {peak - rss_before:+.1f} MB); "
        f"observer: {len(observer.ids)} of {len(published)} events, in order: {order_kept}, "
        f"other frames: {len(observer.others)}; process alive: {proc.poll() is None}"
    )
    assert tally.unexpected == [], tally.unexpected[:5]
    assert all(f.closes[1008] >= 1 for f in flooders), "the rate limit closes abusive connections"
    assert all(t.done() and t.exception() is None for t in flooding)
    assert answered + closing == FRAMES
    assert proc.poll() is None
    assert observer.ids == published and observer.others == []
    assert rss_after - rss_before < RSS_GROWTH_MAX_MB
