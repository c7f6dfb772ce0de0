"""What the stream's consumer cannot use goes to `tributary.dead` with its reason and origin in headers, counted per
reason, logged at most once per reason per interval; the consumer carries on (issue 11, "Dead letters instead of
drops"). Before: one WARNING line per message and the message dropped, no trace on the broker, no metric.

Real RabbitMQ; the malformed messages are published straight to the exchanges, as a buggy producer would.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from tests.stream.support import collect_events, connect, recv_until, subscribe
from tests.stream.test_unitops import _unitop
from tests.support.bus import Bus, envelope
from tributary_common.amqp import DEAD
from tributary_common.deadletters import FIRST_FAILURE, ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, REASON
from tributary_common.timeutil import parse_time

FLOOD = 40
MAX_EVENT_BYTES = 1024 * 1024  # the default of TRIBUTARY_MAX_EVENT_BYTES


class DeadLetterTap:
    """A queue of its own bound to `tributary.dead` (the hub, when it runs, consumes `tributary.deadletters`)."""

    def __init__(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url

    async def __aenter__(self) -> DeadLetterTap:
        self.connection = await aio_pika.connect(self.amqp_url)
        channel = await self.connection.channel()
        dead = await channel.declare_exchange(DEAD.name, aio_pika.ExchangeType.TOPIC, durable=True)
        self.queue = await channel.declare_queue(exclusive=True)
        await self.queue.bind(dead, "#")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def letters(self, queue: str, count: int, timeout: float = 20) -> list[AbstractIncomingMessage]:
        """The letters from `queue` (their routing key); others (the hub's recorders) are left out."""
        got: list[AbstractIncomingMessage] = []
        for _ in range(int(timeout * 20)):
            message = await self.queue.get(no_ack=True, fail=False)
            if message is None:
                if len(got) >= count:
                    await asyncio.sleep(0.5)  # and no more come
                    if (message := await self.queue.get(no_ack=True, fail=False)) is None:
                        return got
                else:
                    await asyncio.sleep(0.05)
                    continue
            if message.routing_key == queue:
                got.append(message)
        raise AssertionError(f"{len(got)} dead letters, expected {count}")


def _metric(text: str, reason: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'tributary_stream_dead_lettered_total{{reason="{reason}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_unusable_events_are_dead_lettered_and_the_stream_goes_on(
    amqp_url: str, stream: Any, publisher: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tributary_stream.dead_letters")
    ws = await connect(stream)
    assert (await subscribe(ws, "s", events={"pattern": "dl.#"}))["type"] == "subscribed"
    missing_type = {k: v for k, v in envelope("dl", "a").items() if k != "type"}
    bad: list[tuple[str, bytes, str]] = [
        ("dl.a", b"\xff not json", "undecodable"),
        ("dl.a", b"[1, 2]", "not_a_cloudevent"),
        ("dl.a", orjson.dumps(missing_type), "not_a_cloudevent"),
        ("dl.a", orjson.dumps({**envelope("dl", "a"), "id": 7}), "not_a_cloudevent"),
        ("dl.a", orjson.dumps({**envelope("dl", "a"), "time": "yesterday"}), "not_a_cloudevent"),
        ("dl.a", orjson.dumps(envelope("dl", "a", data="x" * (MAX_EVENT_BYTES + 1))), "too_large"),
    ]
    bad += [("dl.flood", b"{not json", "undecodable")] * FLOOD
    async with DeadLetterTap(amqp_url) as tap:
        for key, body, _ in bad:
            await publisher.raw("tributary.events", key, body, {"x-app": "kept"})
        good = await publisher.event("dl", "b", {"after": "the bad ones"})
        # The consumer carried on: the good event arrives, and nothing else for this subscription.
        events = await collect_events(ws, "s", 1)
        assert [e["id"] for e in events] == [good["id"]]
        letters = await tap.letters(f"tributary.stream.{stream.settings.instance_id}", len(bad))
    assert len(letters) == len(bad)
    queue = f"tributary.stream.{stream.settings.instance_id}"
    for letter, (key, body, reason) in zip(letters, bad, strict=True):
        headers = letter.headers
        assert letter.body == body  # the original, so that a replay publishes it again
        assert letter.routing_key == queue and letter.exchange == "tributary.dead"
        assert (headers[REASON], headers[ORIGINAL_EXCHANGE], headers[ORIGINAL_ROUTING_KEY]) == (
            reason,
            "tributary.events",
            key,
        )
        assert parse_time(str(headers[FIRST_FAILURE]))
        assert headers["x-app"] == "kept"
        assert letter.delivery_mode == aio_pika.DeliveryMode.PERSISTENT

    async with httpx.AsyncClient(base_url=stream.base) as http:
        metrics = (await http.get("/metrics")).text
    assert _metric(metrics, "undecodable") == FLOOD + 1
    assert _metric(metrics, "not_a_cloudevent") == 4
    assert _metric(metrics, "too_large") == 1
    # One line per reason per interval, however many letters: not one per message.
    lines = [r.getMessage() for r in caplog.records if "dead-lettering" in r.getMessage()]
    assert sorted(line.split("(")[1].split(")")[0] for line in lines) == [
        "not_a_cloudevent",
        "too_large",
        "undecodable",
    ], lines
    await ws.close()


async def test_unusable_samples_and_unitop_changes_are_dead_lettered(
    amqp_url: str, hub: Any, stream: Any, publisher: Bus
) -> None:
    sids = await _unitop(hub, amqp_url, "dl-pump")
    ws = await connect(stream)
    assert (await subscribe(ws, "u", unitop={"name": "dl-pump"}))["type"] == "subscribed"
    sid = sids["flow"]
    key = f"simulator.{sid}"
    bad: list[tuple[str, str, bytes, str]] = [
        ("tributary.samples", key, b"\x00\x01", "undecodable"),
        ("tributary.samples", key, orjson.dumps({"sid": sid, "samples": []}), "not_a_sample_batch"),
        ("tributary.samples", key, orjson.dumps({"sid": sid, "samples": [{"v": 1}]}), "not_a_sample_batch"),
        (
            "tributary.samples",
            key,
            orjson.dumps({"sid": sid, "samples": [{"t": "soon", "v": 1}]}),
            "not_a_sample_batch",
        ),
        ("tributary.control", "unitop.dl-pump", b"{", "undecodable"),
        (
            "tributary.control",
            "unitop.dl-pump",
            orjson.dumps({"name": "dl-pump", "action": "?"}),
            "not_a_control_message",
        ),
    ]
    async with DeadLetterTap(amqp_url) as tap:
        for exchange, routing_key, body, _ in bad:
            await publisher.raw(exchange, routing_key, body)
        letters = await tap.letters(f"tributary.stream.{stream.settings.instance_id}", len(bad))
    got = sorted((str(m.headers[ORIGINAL_EXCHANGE]), str(m.headers[REASON]), m.body) for m in letters)
    assert got == sorted((exchange, reason, body) for exchange, _, body, reason in bad)
    # Still subscribed and served: a good batch arrives.
    sample = {"t": "2026-11-30T00:00:00Z", "v": 1.5}
    await publisher.raw(
        "tributary.samples", key, orjson.dumps({"sid": sid, "source": "simulator", "samples": [sample]})
    )
    frame, _ = await recv_until(ws, lambda f: f.get("type") == "samples" and f.get("sid") == sid)
    assert frame["samples"][0]["v"] == 1.5
    await ws.close()
