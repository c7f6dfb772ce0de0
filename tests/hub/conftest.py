"""The hub in-process (FastAPI app with its lifespan started) on the real broker (a vhost per test), FerretDB
(a database per test) and Memcached (a namespace per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aio_pika.abc
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from tests.support.tokens import Minter
from tributary_hub.app import create_app
from tributary_hub.composition import Hub
from tributary_hub.settings import HubSettings

SECRET = "hub-tests-secret-0123456789-0123456789"

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["temp"],
    "properties": {
        "temp": {"type": "number", "minimum": -50, "maximum": 150},
        "unit": {"type": "string", "enum": ["C", "F"]},
        "at": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": False,
}


MINT = Minter(SECRET, subject="tester")


def admin_client(app: FastAPI, **options: Any) -> httpx.AsyncClient:
    """An admin's client of the hub `app`, in-process."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://hub", headers=MINT.bearer(["admin"]), **options)


@pytest.fixture
def hub_settings(amqp_url: str, mongo_url: str, mongo_db_name: str, cache_namespace: str) -> HubSettings:
    return HubSettings(
        amqp_url=amqp_url,
        mongodb_url=mongo_url,
        mongodb_db=mongo_db_name,
        cache_namespace=cache_namespace,
        jwt_secret=SecretStr(SECRET),
        auth_enabled=True,
        demand_interval_s=0.3,
        demand_ttl_s=2.0,
        recorder_batch_max_delay_ms=20,
        retention_sweep_interval_s=3600,
        api_key_cache_s=0,
        topic_cache_ttl_s=60,
        log_json=False,
    )


@pytest.fixture
async def app(hub_settings: HubSettings, mongo_client: AsyncMongoClient[Any]) -> AsyncIterator[FastAPI]:
    application = create_app(hub_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def hub(app: FastAPI) -> Hub:
    h: Hub = app.state.hub
    return h


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with admin_client(app, timeout=30) as c:
        yield c


@pytest.fixture
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials: tests set headers per request."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub", timeout=30) as c:
        yield c


async def make_topic(
    client: httpx.AsyncClient, name: str = "readings", schema: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    r = await client.post("/topics", json={"name": name, "schema": schema or SCHEMA, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def recorded(hub: Hub, topic: str) -> list[dict[str, Any]]:
    assert hub.mongo is not None
    return await hub.history.collection.find({"type": topic}).sort([("time", 1), ("_id", 1)]).to_list()


async def filled_queue(channel: aio_pika.abc.AbstractChannel, name: str, count: int) -> aio_pika.abc.AbstractQueue:
    """A durable queue holding `count` messages, their bodies "0", "1", …"""
    queue = await channel.declare_queue(name, durable=True)
    for i in range(count):
        await channel.default_exchange.publish(aio_pika.Message(str(i).encode()), routing_key=queue.name)
    return queue
