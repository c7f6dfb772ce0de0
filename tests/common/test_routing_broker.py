"""The pure-Python matcher predicts exactly what the real RabbitMQ routes (faststream over a real broker)."""

from __future__ import annotations

import asyncio

import pytest
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import platform
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
    exchange = RabbitExchange(platform.unique("match"), type=ExchangeType.TOPIC, durable=False, auto_delete=True)
    broker = RabbitBroker(amqp_url, logger=None)
    await broker.connect()
    try:
        ex = await broker.declare_exchange(exchange)
        queues = {}
        for p in patterns:
            q = await broker.declare_queue(RabbitQueue(platform.unique("q"), exclusive=True, auto_delete=True))
            await q.bind(ex, routing_key=p)
            queues[p] = q
        for k in keys:
            await broker.publish(k.encode(), exchange=exchange, routing_key=k)
        got: dict[str, set[str]] = {p: set() for p in patterns}
        for p, q in queues.items():
            while (msg := await q.get(no_ack=True, fail=False, timeout=5)) is not None:
                got[p].add(msg.body.decode())
        return got
    finally:
        await broker.stop()


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
