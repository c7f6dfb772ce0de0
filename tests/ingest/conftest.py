"""Fixtures of the ingest suites."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.bus import Bus, bus


@pytest.fixture
async def amqp_bus(amqp_url: str) -> AsyncIterator[Bus]:
    async with bus(amqp_url) as b:
        yield b
