"""Fixtures every suite may use. Each test session works in its own RabbitMQ vhost, MongoDB database and
Memcached namespace on the real local services (`make services`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.support import platform
from tests.support.stack import Stack
from tributary_common.cache import Cache


@pytest.fixture(scope="session")
def services() -> None:
    platform.require_services()


@pytest.fixture
def vhost(services: None) -> Iterator[str]:
    """A fresh RabbitMQ vhost for one test (exchanges and queues start empty)."""
    name = platform.unique("test")
    platform.create_vhost(name)
    yield name
    platform.delete_vhost(name)


@pytest.fixture
def amqp_url(vhost: str) -> str:
    return platform.amqp_url(vhost)


@pytest.fixture
def mongo_url(services: None) -> str:
    return platform.mongodb_url()


@pytest.fixture
def mongo_db_name() -> str:
    return platform.unique("test").replace("-", "_")


@pytest.fixture
async def mongo_client(mongo_url: str, mongo_db_name: str) -> AsyncIterator[AsyncMongoClient[Any]]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client
    await client.drop_database(mongo_db_name)
    await client.close()


@pytest.fixture
def cache_namespace() -> str:
    return platform.unique("t")


@pytest.fixture
async def memcached(services: None, cache_namespace: str) -> AsyncIterator[Cache]:
    """A `Cache` on the local memcached, in a namespace of the test's own."""
    c = Cache("127.0.0.1", platform.MEMCACHED_PORT, cache_namespace)
    yield c
    await c.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that ran on a stack of service processes gets the tail of each one's log in its report: a
    CI machine is gone once the run ends, and with it the logs a timing failure could be understood from."""
    report: pytest.TestReport = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when == "call" and report.failed and isinstance(stack, Stack):
        for name, proc in stack.procs.items():
            report.sections.append((f"{name} log, last lines", proc.tail(80)))
    return report
