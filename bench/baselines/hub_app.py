"""The least a hub can do for one event, as the baseline of bench/http_publish.py.

One FastAPI route: the body parsed with orjson, validated with jsonschema-rs against the topic's schema, wrapped in
a CloudEvents-shaped envelope and published persistent with a publisher confirm through aio-pika, in one uvicorn
worker. No auth, ACL, limits, idempotency, metrics or tracing: what the hub does beyond this is what it costs.

Run as its own process: `python bench/baselines/hub_app.py <port> <amqp-url> <schema-json>`.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika
import jsonschema_rs
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response


def build(amqp_url: str, schema: dict[str, Any]) -> FastAPI:
    validator = jsonschema_rs.validator_for(schema)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        connection = await aio_pika.connect(amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        # An exchange of its own, with no queue bound: every run of the baseline costs the broker the same (a
        # confirm, nothing stored), before and after the hub's queues are bound to `tributary.events`, and its events
        # never reach the hub's recorders.
        state["exchange"] = await channel.declare_exchange(
            "bench.baseline.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        yield
        await connection.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/topics/{topic}/events", status_code=202)
    async def publish(topic: str, request: Request) -> Response:
        body = orjson.loads(await request.body())
        if not validator.is_valid(body["data"]):
            return Response(orjson.dumps({"error": "invalid"}), status_code=422, media_type="application/json")
        event_id = str(uuid.uuid4())
        envelope = {
            "specversion": "1.0",
            "id": event_id,
            "source": f"/topics/{topic}",
            "type": topic,
            "subject": body["subject"],
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": body["data"],
        }
        message = aio_pika.Message(
            orjson.dumps(envelope),
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event_id,
        )
        await state["exchange"].publish(message, routing_key=f"{topic}.{body['subject']}")
        return Response(orjson.dumps({"id": event_id}), status_code=202, media_type="application/json")

    return app


if __name__ == "__main__":
    port, url, schema = int(sys.argv[1]), sys.argv[2], orjson.loads(sys.argv[3])
    uvicorn.run(build(url, schema), host="127.0.0.1", port=port, log_level="warning", access_log=False)
