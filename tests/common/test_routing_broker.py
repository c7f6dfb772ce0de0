"""The pure-Python matcher predicts exactly what the real RabbitMQ routes (aio-pika over a real broker)."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import platform
from tributary_common.amqp import ExchangeSpec, QueueSpec, connect, declare_exchange, declare_queue
from tributary_common.matcher import matches

SEGS = ["a", "b", "c"]
keys_st = st.lists(
    st.lists(st.sampled_from(SEGS), min_size=1, max_size=4).map(".".join), min_size=5, max_size=25, unique=True
)
patterns_st = st.lists(
    st.lists(st.sampled_from([*SEGS, "*", "#"]), min_size=1, max_size=4).map(".".join),
    min_size=3,
    max_size=12,
    unique=True,
)


async def _route(amqp_url: str, patterns: list[str], keys: list[str]) -> dict[str, set[str]]:
    """Bind one queue per pattern to a fresh topic exchange, publish every key, return what each queue got."""
    # Not auto-deleted (ExchangeSpec has no such flag): it goes with the test's vhost.
    exchange = ExchangeSpec(platform.unique("match"), aio_pika.ExchangeType.TOPIC, durable=False)
    connection = await connect(amqp_url, name="test-routing", robust=False)
    try:
        channel = await connection.channel()
        ex = await declare_exchange(channel, exchange)
        queues = {}
        for p in patterns:
            spec = QueueSpec(platform.unique("q"), exclusive=True, auto_delete=True, bindings=((exchange, p),))
            queues[p] = await declare_queue(channel, spec)
        for k in keys:
            await ex.publish(aio_pika.Message(k.encode()), routing_key=k)  # confirmed before the gets below
        got: dict[str, set[str]] = {p: set() for p in patterns}
        for p, q in queues.items():
            while (msg := await q.get(no_ack=True, fail=False, timeout=5)) is not None:
                got[p].add(msg.body.decode())
        return got
    finally:
        await connection.close()


def _check(got: dict[str, set[str]], keys: list[str]) -> None:
    for pattern, received in got.items():
        expected = {k for k in keys if matches(pattern, k)}
        assert received == expected, f"pattern {pattern!r}: broker routed {received}, matcher predicts {expected}"


def test_edge_cases_against_broker(amqp_url: str) -> None:
    patterns = ["a.#", "#.a", "a.#.b", "*", "a.*", "#", "*.#", "#.*.#", "a.*.c"]
    keys = ["a", "b", "a.b", "a.b.c", "a.x.b", "b.a", "a.b.b.c", "c"]
    _check(asyncio.run(_route(amqp_url, patterns, keys)), keys)


@pytest.mark.timeout(120)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patterns=patterns_st, keys=keys_st)
def test_matcher_predicts_broker(amqp_url: str, patterns: list[str], keys: list[str]) -> None:
    _check(asyncio.run(_route(amqp_url, patterns, keys)), keys)
