"""Ingest's control consumer sends what it cannot use to `tributary.dead` (issue 11), with the reason, the original
exchange and routing key and the first failure time, instead of one log line and a drop; good messages among the
bad ones are served. Real broker. Failed on the code before: nothing reached `tributary.dead`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import aio_pika
import pytest
from pydantic import BaseModel, model_validator

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common import deadletters
from tributary_common.amqp import DEAD
from tributary_ingest import control_messages
from tributary_ingest.connectors.simulator import SimulatorSource
from tributary_ingest.control_messages import ControlDeadLetters
from tributary_ingest.metrics import IngestMetrics
from tributary_ingest.sdk import Connector

pytestmark = pytest.mark.timeout(90)


async def test_unusable_control_messages_are_dead_lettered(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    assert amqp_bus.channel is not None
    dead_ex = await amqp_bus.channel.declare_exchange(DEAD.name, "topic", durable=True)
    tap = await amqp_bus.channel.declare_queue(exclusive=True, auto_delete=True)
    await tap.bind(dead_ex, routing_key="#")
    good = sub("simulator", {"signal": "sine", "rate_hz": 10.0})
    flood = 300
    caplog.set_level(logging.WARNING, logger="tributary_ingest")
    async with engine(make_settings(amqp_url, cache_namespace), {"simulator": SimulatorSource}) as e:
        queue = e.queue_name
        control = amqp_bus.control_ex
        sent: dict[str, tuple[bytes, str]] = {
            "undecodable": (b"{not json", "demand.simulator"),
            "not_a_demand": (b'{"source": "simulator", "requester": "x"}', "demand.simulator"),
            "wrong_source": (
                b'{"source": "csv", "requester": "x", "subscriptions": [], "ttl_s": 1, '
                b'"sent_at": "2026-01-01T00:00:00Z"}',
                "demand.simulator",
            ),
            "bad_announcement": (b"[1, 2, 3]", "source.simulator"),
        }
        for name, (body, key) in sent.items():
            await control.publish(aio_pika.Message(body, headers={"case": name}), routing_key=key)
        for i in range(flood):  # a flood of one kind: all dead-lettered, a bounded number of log lines
            await control.publish(aio_pika.Message(b"\xff" * (i + 1), headers={"case": "flood"}), "demand.simulator")
        amqp_bus.demand("simulator", [good])
        await eventually(lambda: amqp_bus.values(good.sid), 30, "the good demand served among the bad ones")

        letters: list[aio_pika.abc.AbstractIncomingMessage] = []

        async def collected() -> bool:
            while (m := await tap.get(no_ack=True, fail=False)) is not None:
                letters.append(m)
            return len(letters) >= len(sent) + flood

        await eventually(collected, 30, "every bad control message dead-lettered")
        await asyncio.sleep(0.5)
        await collected()
        metrics = e.metrics.registry.get_sample_value
        assert metrics("tributary_ingest_dead_lettered_total", {"reason": "undecodable"}) == 1 + flood
        assert metrics("tributary_ingest_dead_lettered_total", {"reason": "not_a_control_message"}) == 3
        assert e.status()["sources"]["simulator"]["leases"] == {good.sid: "running"}

    assert len(letters) == len(sent) + flood
    by_case: dict[str, Any] = {str((m.headers or {}).get("case")): m for m in letters}
    expected = {
        "undecodable": ("undecodable", "demand.simulator"),
        "not_a_demand": ("not_a_control_message", "demand.simulator"),
        "wrong_source": ("not_a_control_message", "demand.simulator"),
        "bad_announcement": ("not_a_control_message", "source.simulator"),
    }
    for case, (reason, key) in expected.items():
        m = by_case[case]
        h = m.headers or {}
        assert (h[deadletters.REASON], h[deadletters.ORIGINAL_ROUTING_KEY]) == (reason, key), (case, h)
        assert h[deadletters.ORIGINAL_EXCHANGE] == "tributary.control"
        assert h[deadletters.FIRST_FAILURE].endswith("Z") and h[deadletters.DETAIL]
        assert m.routing_key == queue and m.body == sent[case][0]  # the original, body unchanged
        assert m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert "/ttl_s" in by_case["not_a_demand"].headers[deadletters.DETAIL] or "Field required" in str(
        by_case["not_a_demand"].headers[deadletters.DETAIL]
    )
    assert "'csv'" in str(by_case["wrong_source"].headers[deadletters.DETAIL])
    lines = [r for r in caplog.records if "dead-lettering a control message" in r.getMessage()]
    assert 1 <= len(lines) <= 4, [r.getMessage() for r in lines]  # one per reason per interval, with a count


class BuggyParams(BaseModel):
    tag: str

    @model_validator(mode="after")
    def _buggy(self) -> BuggyParams:
        if self.tag == "boom":
            raise RuntimeError("a bug in the connector's model")  # not a ValueError: pydantic lets it through
        return self


class BuggySource(Connector[BuggyParams]):
    params_model = BuggyParams

    async def read(self, sid: str, params: BuggyParams) -> None:
        await asyncio.Event().wait()


async def test_a_demand_that_breaks_the_consumer_is_dead_lettered_as_unexpected(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    assert amqp_bus.channel is not None
    dead_ex = await amqp_bus.channel.declare_exchange(DEAD.name, "topic", durable=True)
    tap = await amqp_bus.channel.declare_queue(exclusive=True, auto_delete=True)
    await tap.bind(dead_ex, routing_key="#")
    async with engine(make_settings(amqp_url, cache_namespace), {"buggy": BuggySource}) as e:
        await amqp_bus.send_demand("buggy", [sub("buggy", {"tag": "boom"})])
        letter = await eventually(lambda: tap.get(no_ack=True, fail=False), 20, "the dead letter")
        h = letter.headers or {}
        assert h[deadletters.REASON] == "unexpected_error"
        assert h[deadletters.ORIGINAL_ROUTING_KEY] == "demand.buggy"
        assert "RuntimeError" in str(h[deadletters.DETAIL])
        assert (
            e.metrics.registry.get_sample_value("tributary_ingest_dead_lettered_total", {"reason": "unexpected_error"})
            == 1
        )


class Letter:
    routing_key = "demand.simulator"


LETTER: Any = Letter()  # a message as far as the dead-letter path reads one


class SlowBroker:
    """A dead-letter sender whose confirms come when the test says (the logic of the bound, without a broker)."""

    def __init__(self) -> None:
        self.confirm = asyncio.Event()
        self.sent = 0

    async def send(self, message: Any, *, queue: str, reason: str, detail: str) -> None:
        await self.confirm.wait()
        self.sent += 1


async def test_a_burst_past_the_in_flight_bound_waits_for_confirms_and_only_a_stuck_broker_loses_letters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bound once refused the 65th letter of a burst at once: a flood of 300 lost letters when the broker was
    slow to confirm (CI under load). Now the letters past it wait for a slot, up to `SLOT_WAIT_S`."""
    monkeypatch.setattr(control_messages, "SLOT_WAIT_S", 0.5, raising=False)
    dead = ControlDeadLetters("q", IngestMetrics())
    broker = SlowBroker()
    dead.sender = cast(Any, broker)  # a stand-in for the confirm timing only
    burst = control_messages.MAX_IN_FLIGHT + 36
    letters = [asyncio.create_task(dead.send(LETTER, "undecodable", "x")) for _ in range(burst)]
    await asyncio.sleep(0.1)
    broker.confirm.set()
    await asyncio.gather(*letters)
    lost = dead.metrics.registry.get_sample_value
    assert broker.sent == burst
    assert lost("tributary_ingest_dead_letters_lost_total", {"reason": "undecodable"}) is None

    stuck = SlowBroker()  # never confirms
    dead.sender = cast(Any, stuck)
    letters = [asyncio.create_task(dead.send(LETTER, "undecodable", "x")) for _ in range(burst)]
    await asyncio.sleep(0.7)
    assert (
        lost("tributary_ingest_dead_letters_lost_total", {"reason": "undecodable"})
        == burst - control_messages.MAX_IN_FLIGHT
    )
    for task in letters:
        task.cancel()
    await asyncio.gather(*letters, return_exceptions=True)
