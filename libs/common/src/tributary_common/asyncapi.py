"""AsyncAPI 3.0 documents generated from the wire models: a service describes its channels and operations as data
(`Api`), and `document` turns it into the JSON served at `GET /asyncapi.json`. Payload schemas come from the
same pydantic models the code validates messages with, so the document cannot drift from the code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

VERSION = "3.0.0"
SCHEMAS = "#/components/schemas/"

# A payload: a wire model, or a JSON schema written out where no model exists (a dead letter's raw body).
Payload = type[BaseModel] | dict[str, Any]


@dataclass(frozen=True)
class Message:
    name: str
    summary: str
    payload: Payload
    headers: dict[str, Any] | None = None
    content_type: str = "application/json"
    correlated: bool = False  # RPC: the AMQP correlation id pairs a request with its reply


@dataclass(frozen=True)
class Channel:
    key: str
    address: str | None  # None: decided at run time (a reply queue)
    description: str
    messages: tuple[Message, ...]
    bindings: dict[str, Any] | None = None
    parameters: dict[str, str] = field(default_factory=dict)  # {name} in the address -> description


@dataclass(frozen=True)
class Reply:
    channel: str
    messages: tuple[str, ...]
    address: str | None = None  # a runtime expression, e.g. `$message.header#/replyTo`


@dataclass(frozen=True)
class Operation:
    key: str
    action: Literal["send", "receive"]
    channel: str
    messages: tuple[str, ...]
    summary: str
    reply: Reply | None = None


@dataclass(frozen=True)
class Api:
    title: str
    version: str
    description: str
    servers: dict[str, dict[str, Any]]
    channels: tuple[Channel, ...]
    operations: tuple[Operation, ...]


def amqp_exchange(name: str) -> dict[str, Any]:
    """Channel bindings of a durable topic exchange (AMQP binding 0.3.0)."""
    exchange = {"name": name, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}
    return {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": "0.3.0"}}


def amqp_queue(name: str, *, durable: bool) -> dict[str, Any]:
    queue = {"name": name, "durable": durable, "exclusive": False, "autoDelete": False, "vhost": "/"}
    return {"amqp": {"is": "queue", "queue": queue, "bindingVersion": "0.3.0"}}


def document(api: Api) -> dict[str, Any]:
    models = {m.payload for c in api.channels for m in c.messages if isinstance(m.payload, type)}
    # One schema per model (and per nested model), named by the model, referenced from the messages.
    keyed, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=SCHEMAS + "{model}"
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    for channel in api.channels:
        refs: dict[str, Any] = {}
        for m in channel.messages:
            payload = keyed[(m.payload, "validation")] if isinstance(m.payload, type) else m.payload
            body: dict[str, Any] = {"name": m.name, "summary": m.summary, "contentType": m.content_type}
            body["payload"] = payload
            if m.headers is not None:
                body["headers"] = m.headers
            if m.correlated:
                body["correlationId"] = {"location": "$message.header#/correlation_id"}
            previous = messages.setdefault(m.name, body)
            if previous != body:
                raise ValueError(f"message {m.name!r} is described twice, differently")
            refs[m.name] = {"$ref": f"#/components/messages/{m.name}"}
        spec: dict[str, Any] = {"address": channel.address, "description": channel.description, "messages": refs}
        if channel.parameters:
            spec["parameters"] = {k: {"description": v} for k, v in channel.parameters.items()}
        if channel.bindings:
            spec["bindings"] = channel.bindings
        channels[channel.key] = spec
    operations: dict[str, Any] = {}
    for op in api.operations:
        _check(channels, op.channel, op.messages, op.key)
        spec = {
            "action": op.action,
            "channel": {"$ref": f"#/channels/{op.channel}"},
            "summary": op.summary,
            "messages": [{"$ref": f"#/channels/{op.channel}/messages/{m}"} for m in op.messages],
        }
        if op.reply is not None:
            _check(channels, op.reply.channel, op.reply.messages, op.key)
            reply: dict[str, Any] = {
                "channel": {"$ref": f"#/channels/{op.reply.channel}"},
                "messages": [{"$ref": f"#/channels/{op.reply.channel}/messages/{m}"} for m in op.reply.messages],
            }
            if op.reply.address is not None:
                reply["address"] = {"location": op.reply.address}
            spec["reply"] = reply
        operations[op.key] = spec
    return {
        "asyncapi": VERSION,
        "info": {"title": api.title, "version": api.version, "description": api.description},
        "servers": api.servers,
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _check(channels: dict[str, Any], channel: str, messages: tuple[str, ...], where: str) -> None:
    # A typo in the description fails at start-up and in the tests, not in a reader's tool.
    if channel not in channels:
        raise ValueError(f"operation {where}: no channel {channel!r}")
    unknown = [m for m in messages if m not in channels[channel]["messages"]]
    if unknown:
        raise ValueError(f"operation {where}: channel {channel!r} has no message {unknown[0]!r}")


def asyncapi_router(api: Api) -> APIRouter:
    """`GET /asyncapi.json`: the document, generated once (a bad description fails at start-up)."""
    body = document(api)
    router = APIRouter(tags=["interfaces"])

    @router.get(
        "/asyncapi.json",
        summary="The AsyncAPI 3.0 document of this service's messages",
        response_model=dict[str, Any],
        responses={200: {"description": "An AsyncAPI 3.0.0 document"}},
    )
    async def asyncapi() -> JSONResponse:
        return JSONResponse(body)

    return router
