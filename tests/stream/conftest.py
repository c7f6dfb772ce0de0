from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.stream.support import Publisher, RunningStream, settings_for, start_stream


@pytest.fixture
async def stream(amqp_url: str) -> AsyncIterator[RunningStream]:
    running = await start_stream(settings_for(amqp_url))
    yield running
    await running.stop()


@pytest.fixture
async def publisher(amqp_url: str) -> AsyncIterator[Publisher]:
    async with Publisher(amqp_url) as pub:
        yield pub
