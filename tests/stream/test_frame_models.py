"""The stream's hand-written parser and encoders agree with the frame models its AsyncAPI document publishes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from tributary_common.stream_frames import (
    CLIENT_FRAMES,
    ErrorFrame,
    EventFrame,
    GapFrame,
    PingFrame,
    PongFrame,
    SamplesFrame,
    SseSamples,
    SubscribedFrame,
    SubscribeEventsFrame,
    SubscribeUnitopFrame,
    UnsubscribedFrame,
    UnsubscribeFrame,
)
from tributary_stream import frames as server_frames
from tributary_stream import protocol

T = "2026-01-02T03:04:05.000000Z"
CLIENT_EXAMPLES: list[dict[str, Any]] = [
    {"op": "subscribe", "id": "s1", "events": {"pattern": "orders.#"}},
    {"op": "subscribe", "id": "s1", "events": {"pattern": "orders.eu.#", "since": T}},
    {"op": "subscribe", "id": "s1", "events": {"pattern": "orders", "since": "evt-17"}},
    {"op": "subscribe", "id": "s1", "events": {"pattern": "orders", "since": {"id": "evt-17", "time": T}}},
    {"op": "subscribe", "id": "u", "unitop": {"name": "reactor1"}},
    {"op": "subscribe", "id": "u", "unitop": {"name": "reactor1", "items": ["temp"], "since": T}},
    {"op": "subscribe", "id": "u", "unitop": {"name": "reactor1", "since": {"time": T, "items": {"temp": T}}}},
    {"op": "unsubscribe", "id": "s1"},
    {"op": "ping"},
    {"op": "ping", "id": "p"},
]
PARSED = {
    SubscribeEventsFrame: protocol.SubscribeEvents,
    SubscribeUnitopFrame: protocol.SubscribeUnitop,
    UnsubscribeFrame: protocol.Unsubscribe,
    PingFrame: protocol.Ping,
}


def _model_of(frame: dict[str, Any]) -> type[BaseModel]:
    fits = [m for m in CLIENT_FRAMES if _valid(m, frame)]
    assert len(fits) == 1, f"{frame} fits {fits}"
    return fits[0]


def _valid(model: type[BaseModel], frame: dict[str, Any]) -> bool:
    try:
        model.model_validate(frame)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("frame", CLIENT_EXAMPLES)
def test_client_frames_of_the_models_are_what_the_parser_accepts(frame: dict[str, Any]) -> None:
    model = _model_of(frame)
    parsed = protocol.parse_frame(json.dumps(frame), 65536)
    assert isinstance(parsed, PARSED[model])


@pytest.mark.parametrize(
    "frame",
    [
        {"op": "subscribe", "id": "s", "events": {"pattern": "a"}, "extra": 1},
        {"op": "subscribe", "id": "", "events": {"pattern": "a"}},
        {"op": "subscribe", "id": "s", "events": {"pattern": "a"}, "unitop": {"name": "u"}},
        {"op": "unsubscribe", "id": "x" * 129},
        {"op": "ping", "id": "x" * 129},
        {"op": "subscribe", "id": "u", "unitop": {"name": "r", "items": []}},
    ],
)
def test_frames_the_parser_refuses_fit_no_model(frame: dict[str, Any]) -> None:
    with pytest.raises(protocol.FrameError):
        protocol.parse_frame(json.dumps(frame), 65536)
    assert not any(_valid(m, frame) for m in CLIENT_FRAMES), f"a model accepts {frame}"


EVENT = {
    "specversion": "1.0",
    "id": "e1",
    "source": "/topics/orders",
    "type": "orders",
    "subject": "eu",
    "time": T,
    "dataschema": "/topics/orders/schemas/1",
    "datacontenttype": "application/json",
    "data": {"n": 1},
}


def test_server_frames_of_the_encoders_fit_the_models() -> None:
    sub = json.dumps("s1")
    samples = json.dumps([{"t": T, "v": 1.5, "q": None}])
    frames: list[tuple[type[BaseModel], str]] = [
        (ErrorFrame, server_frames.error_frame("invalid_frame", "/id: missing", None)),
        (ErrorFrame, server_frames.error_frame("invalid_pattern", "bad", "s1")),
        (PongFrame, server_frames.pong_frame("p")),
        (PongFrame, server_frames.pong_frame(None)),
        (EventFrame, server_frames.event_frame(sub, json.dumps(EVENT))),
        (SamplesFrame, server_frames.samples_frame(sub, server_frames.samples_body("r1", "temp", "sid1", samples))),
        (GapFrame, server_frames.gap_frame("s1", {"id": "e1", "time": T}, "slow_client", {"dropped": 3})),
        (GapFrame, server_frames.gap_frame("u", {"time": T, "items": {"temp": T}}, "broker")),
        (SubscribedFrame, server_frames.dumps({"type": "subscribed", "id": "s1", "events": {"pattern": "orders.#"}})),
        (UnsubscribedFrame, server_frames.dumps({"type": "unsubscribed", "id": "s1", "reason": "unitop_deleted"})),
    ]
    for model, text in frames:
        model.model_validate_json(text)


def test_sse_records_fit_the_models() -> None:
    from tributary_common.events import CloudEvent
    from tributary_stream.frames import SseEncoder

    encoder = SseEncoder()
    record = encoder.message("gap", {"sub": "s1", "last": {"id": "e1"}, "reason": "slow_client"}, None)
    data = record.split("data: ", 1)[1].strip()
    GapFrame.model_validate_json(data)
    body = server_frames.samples_body("r1", "temp", "sid1", json.dumps([{"t": T, "v": True}]))
    SseSamples.model_validate_json("{" + body + "}")
    CloudEvent.model_validate(EVENT)
