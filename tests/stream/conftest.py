from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.stream.support import RunningStream, settings_for, start_stream
from tests.support.bus import Bus


@pytest.fixture
async def stream(amqp_url: str) -> AsyncIterator[RunningStream]:
    running = await start_stream(settings_for(amqp_url))
    yield running
    await running.stop()


@pytest.fixture
async def publisher(amqp_url: str) -> AsyncIterator[Bus]:
    async with Bus(amqp_url, collect=False) as pub:
        yield pub


@pytest.fixture
async def hub(amqp_url: str, mongo_url: str, mongo_db_name: str, mongo_client, cache_namespace: str, tmp_path):  # type: ignore[no-untyped-def]
    """The real hub (HTTP API, recorders, RPC responders) on this test's vhost and database."""
    from tests.stream.hub_support import run_hub

    async for h in run_hub(amqp_url, mongo_url, mongo_db_name, cache_namespace, tmp_path):
        yield h
