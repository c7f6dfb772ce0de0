"""What the hub and the stream say in their AsyncAPI documents: channels and operations as data, the payloads
being the wire models themselves (see `asyncapi.document`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, RootModel, create_model

from . import deadletters as dl
from . import rpc_contracts as rc
from . import stream_frames as sf
from .amqp.topology import CONTROL, DEAD, DEADLETTERS, EVENTS, RPC_HUB, SAMPLES
from .asyncapi import Api, Channel, Message, Operation, Reply, amqp_exchange, amqp_queue
from .control import Demand, SourceAnnouncement, UnitopChange
from .events import CloudEvent
from .samples import SampleBatch

VERSION = "0.1.0"
BROKER = {"broker": {"host": "rabbitmq:5672", "protocol": "amqp", "protocolVersion": "0.9.1"}}
REPLY_TO = "$message.header#/replyTo"


def _header(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        dl.LETTER_ID: _header("This letter's id: 32 lowercase hex, new at every dead-lettering"),
        dl.REASON: {"type": "string", "enum": sorted(dl.REASONS), "description": "Why it can never be used"},
        dl.DETAIL: {"type": "string", "maxLength": dl.DETAIL_MAX, "description": "What was wrong (never the body)"},
        dl.ORIGINAL_EXCHANGE: _header("The exchange it was published to (empty: the default exchange)"),
        dl.ORIGINAL_ROUTING_KEY: _header("Its routing key"),
        dl.FIRST_FAILURE: {"type": "string", "format": "date-time", "description": "When it first failed"},
    },
    "required": [dl.LETTER_ID, dl.REASON, dl.ORIGINAL_EXCHANGE, dl.ORIGINAL_ROUTING_KEY, dl.FIRST_FAILURE],
}


class RpcErrorBody(BaseModel):
    code: str
    message: str


class RpcFailure(BaseModel):
    ok: Literal[False]
    error: RpcErrorBody


def _pascal(method: str) -> str:
    return "".join(w.capitalize() for w in method.replace(".", "_").split("_"))


def _rpc_request(method: str, params: type[BaseModel]) -> type[BaseModel]:
    """`{method, params}` of one method, as `RpcClient.call` sends it."""
    const: Any = Literal[method]  # a runtime Literal: the method name as a JSON schema `const`
    return create_model(_pascal(method) + "Call", method=(const, ...), params=(params, ...))


def _rpc_reply(method: str, result: type[BaseModel], *, nullable: bool = False) -> type[BaseModel]:
    """`{ok: true, result}` or `{ok: false, error: {code, message}}`, as `RpcServer.dispatch` answers."""
    result_type: Any = result | None if nullable else result
    ok = create_model(_pascal(method) + "Ok", ok=(Literal[True], ...), result=(result_type, ...))
    return create_model(_pascal(method) + "Reply", __base__=RootModel[ok | RpcFailure])  # type: ignore[valid-type]


# method, request params, reply result, result may be null, summary
HUB_METHODS: tuple[tuple[str, type[BaseModel], type[BaseModel], bool, str], ...] = (
    (rc.EVENTS_HISTORY, rc.EventsHistoryRequest, rc.EventsHistoryPage, False, "A page of a topic's events"),
    (rc.SAMPLES_HISTORY, rc.SamplesHistoryRequest, rc.SamplesHistoryPage, False, "A page of samples"),
    (rc.UNITOP_RESOLVE, rc.UnitopResolveRequest, rc.UnitopResolved, True, "A unitop's items and their sids"),
    (rc.APIKEY_VERIFY, rc.ApiKeyVerifyRequest, rc.ApiKeyVerified, True, "An API key's claims (null: unknown)"),
)


def _camel(method: str) -> str:
    head, *rest = method.replace(".", "_").split("_")
    return head + "".join(w.capitalize() for w in rest)


RPC_REQUESTS = tuple(
    Message(_camel(m) + "Request", summary, _rpc_request(m, params), correlated=True)
    for m, params, _, _, summary in HUB_METHODS
)
RPC_REPLIES = tuple(
    Message(_camel(m) + "Reply", f"The reply to {m}", _rpc_reply(m, result, nullable=nullable), correlated=True)
    for m, _, result, nullable, _ in HUB_METHODS
)
BROWSE_REQUEST = Message(
    "sourceBrowseRequest", "What can be subscribed under a path", _rpc_request(rc.SOURCE_BROWSE, rc.BrowseRequest)
)
BROWSE_REPLY = Message("sourceBrowseReply", "The reply to source.browse", _rpc_reply(rc.SOURCE_BROWSE, rc.BrowseResult))

EVENT = Message("cloudEvent", "A published event (structured CloudEvent, JSON)", CloudEvent)
SAMPLE_BATCH = Message("sampleBatch", "Samples of one subscription, timestamps strictly increasing", SampleBatch)
DEMAND = Message("demand", "Keep reading these subscriptions (a heartbeat; lapses after ttl_s)", Demand)
ANNOUNCEMENT = Message("sourceAnnouncement", "An ingest instance serves this source", SourceAnnouncement)
UNITOP_CHANGE = Message("unitopChange", "A unitop was created, updated or deleted", UnitopChange)
DEAD_LETTER = Message(
    "deadLetter",
    "A message a consumer can never use: the original body and properties, with why in the headers",
    {"description": "The original message body, unchanged (any content type)"},
    headers=DEAD_LETTER_HEADERS,
    content_type="application/octet-stream",
)

HUB_CHANNELS = (
    Channel(
        "events",
        EVENTS.name,
        "Every published event; routing key `<topic>.<subject>` (the topic alone when there is no subject)",
        (EVENT,),
        amqp_exchange(EVENTS.name),
    ),
    Channel(
        "samples",
        SAMPLES.name,
        "Sample batches from ingest; routing key `<source>.<sid>`",
        (SAMPLE_BATCH,),
        amqp_exchange(SAMPLES.name),
    ),
    Channel(
        "control",
        CONTROL.name,
        "Demand (`demand.<source>`), source announcements (`source.<source>`), unitop changes (`unitop.<name>`)",
        (DEMAND, ANNOUNCEMENT, UNITOP_CHANGE),
        amqp_exchange(CONTROL.name),
    ),
    Channel(
        "dead",
        DEAD.name,
        f"Dead letters; routing key = the queue they came from; kept in `{DEADLETTERS.name}` until recorded",
        (DEAD_LETTER,),
        amqp_exchange(DEAD.name),
    ),
    Channel(
        "rpcHub",
        RPC_HUB.name,
        "Requests to the hub (AMQP RPC: `reply_to` and `correlation_id` set by the caller)",
        RPC_REQUESTS,
        amqp_queue(RPC_HUB.name, durable=False),
    ),
    Channel("rpcHubReply", None, "The caller's reply queue (its `reply_to`)", RPC_REPLIES),
    Channel(
        "rpcSource",
        "tributary.rpc.source.{source}",
        "Requests to the ingest instances serving a source",
        (BROWSE_REQUEST,),
        parameters={"source": "A source name"},
    ),
    Channel("rpcSourceReply", None, "The hub's reply queue", (BROWSE_REPLY,)),
)


def _names(messages: tuple[Message, ...]) -> tuple[str, ...]:
    return tuple(m.name for m in messages)


HUB_OPERATIONS = (
    Operation("publishEvent", "send", "events", ("cloudEvent",), "POST /topics/{topic}/events publishes here"),
    Operation("recordEvents", "receive", "events", ("cloudEvent",), "The recorder stores every event"),
    Operation("recordSamples", "receive", "samples", ("sampleBatch",), "The recorder stores every sample batch"),
    Operation("sendDemand", "send", "control", ("demand",), "Demand for the subscriptions of unitops"),
    Operation("receiveAnnouncements", "receive", "control", ("sourceAnnouncement",), "Which sources are served"),
    Operation("sendUnitopChanges", "send", "control", ("unitopChange",), "Unitop created, updated or deleted"),
    Operation("sendDeadLetters", "send", "dead", ("deadLetter",), "What the recorder can never store"),
    Operation("recordDeadLetters", "receive", "dead", ("deadLetter",), "Kept for admins (GET /deadletters)"),
    Operation(
        "answerRpc",
        "receive",
        "rpcHub",
        _names(RPC_REQUESTS),
        "History pages, unitop resolution and API key checks for the stream",
        Reply("rpcHubReply", _names(RPC_REPLIES), REPLY_TO),
    ),
    Operation(
        "browseSource",
        "send",
        "rpcSource",
        ("sourceBrowseRequest",),
        "GET /sources/{source}/browse asks an ingest instance",
        Reply("rpcSourceReply", ("sourceBrowseReply",), REPLY_TO),
    ),
)

HUB = Api(
    "Tributary hub (AMQP)",
    VERSION,
    "The exchanges and queues the hub publishes to and consumes, with their message shapes.",
    BROKER,
    HUB_CHANNELS,
    HUB_OPERATIONS,
)


def _frame(model: type[BaseModel], summary: str) -> Message:
    return Message(model.__name__[0].lower() + model.__name__[1:], summary, model)


CLIENT = (
    _frame(sf.SubscribeEventsFrame, "Subscribe to events matching a pattern, optionally from `since`"),
    _frame(sf.SubscribeUnitopFrame, "Subscribe to a unitop's items, optionally from `since`"),
    _frame(sf.UnsubscribeFrame, "End a subscription"),
    _frame(sf.PingFrame, "Liveness check; answered by a pong"),
)
SERVER = (
    _frame(sf.EventFrame, "An event of a subscription"),
    _frame(sf.SamplesFrame, "Samples of one item of a unitop subscription"),
    _frame(sf.GapFrame, "Messages were lost: resubscribe with `since: last`"),
    _frame(sf.ErrorFrame, "A refused client frame (the connection stays up)"),
    _frame(sf.SubscribedFrame, "A subscription is live"),
    _frame(sf.UnsubscribedFrame, "A subscription ended"),
    _frame(sf.PongFrame, "The answer to a ping"),
)
# SSE records: `event: <type>`, the data below (an `id:` resumes with `Last-Event-ID`); control records carry the
# websocket's frames.
SSE_FRAMES = (
    Message("sseEvent", "`event: event`: the CloudEvent itself", CloudEvent),
    Message("sseSamples", "`event: samples`: samples of one item", sf.SseSamples),
    *(m for m in SERVER if m.name in ("gapFrame", "subscribedFrame", "unsubscribedFrame", "errorFrame")),
)
STREAM_SERVERS = {
    "public": {
        "host": "stream.tributary.example.com",
        "protocol": "wss",
        "description": "Bearer token (Authorization header) or an API key; TLS in production",
    },
    "sse": {"host": "stream.tributary.example.com", "protocol": "https", "description": "Server-sent events"},
}

STREAM = Api(
    "Tributary stream (websocket and SSE)",
    VERSION,
    "Live events and samples with catch-up. JSON text frames: client frames carry `op`, server frames `type`.",
    STREAM_SERVERS,
    (
        Channel("ws", "/ws", "The websocket: client frames in, server frames out", CLIENT + SERVER),
        Channel(
            "sseEvents",
            "/events/{pattern}",
            "SSE of events matching a pattern; `Last-Event-ID` resumes",
            SSE_FRAMES,
            parameters={"pattern": "An events pattern over the routing key"},
        ),
        Channel(
            "sseUnitop",
            "/unitops/{name}/stream",
            "SSE of a unitop's samples; `Last-Event-ID` resumes",
            SSE_FRAMES,
            parameters={"name": "A unitop name"},
        ),
    ),
    (
        Operation(
            "subscribe",
            "receive",
            "ws",
            ("subscribeEventsFrame", "subscribeUnitopFrame"),
            "A client subscribes",
            Reply("ws", ("subscribedFrame", "errorFrame")),
        ),
        Operation(
            "unsubscribe",
            "receive",
            "ws",
            ("unsubscribeFrame",),
            "A client unsubscribes",
            Reply("ws", ("unsubscribedFrame", "errorFrame")),
        ),
        Operation("ping", "receive", "ws", ("pingFrame",), "A client pings", Reply("ws", ("pongFrame",))),
        Operation(
            "deliver",
            "send",
            "ws",
            ("eventFrame", "samplesFrame", "gapFrame", "unsubscribedFrame"),
            "Events, samples and gaps of the client's subscriptions",
        ),
        Operation("streamEvents", "send", "sseEvents", _names(SSE_FRAMES), "Events as SSE"),
        Operation("streamUnitop", "send", "sseUnitop", _names(SSE_FRAMES), "Samples as SSE"),
    ),
)
