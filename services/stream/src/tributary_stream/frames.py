"""Server frames: the websocket's JSON `type` frames, and how each transport turns deliveries into its frames
(websocket JSON text, or SSE records whose data is the same frame, or the CloudEvent itself for an event)."""

from __future__ import annotations

from typing import Any, Protocol

import orjson


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def error_frame(code: str, message: str, frame_id: str | None = None) -> str:
    return dumps({"type": "error", "id": frame_id, "code": code, "message": message})


def pong_frame(frame_id: str | None) -> str:
    return dumps({"type": "pong", "id": frame_id})


def event_frame(sub_json: str, envelope_json: str) -> str:
    # The envelope is encoded once per message and spliced into every subscriber's frame.
    return '{"type":"event","sub":' + sub_json + ',"event":' + envelope_json + "}"


def samples_frame(sub_json: str, body_json: str) -> str:
    # `body_json` is `"unitop":..,"item":..,"sid":..,"samples":[..]` without braces, encoded once.
    return '{"type":"samples","sub":' + sub_json + "," + body_json + "}"


def samples_body(unitop: str, item: str, sid: str, samples_json: str) -> str:
    return f'"unitop":{dumps(unitop)},"item":{dumps(item)},"sid":{dumps(sid)},"samples":{samples_json}'


def gap_frame(sub_id: str, last: Any, reason: str, extra: dict[str, Any] | None = None) -> str:
    return dumps({"type": "gap", "sub": sub_id, "last": last, "reason": reason, **(extra or {})})


class SubscriptionView(Protocol):
    """What a client needs of its subscriptions (subscriptions.py builds on clients.py, not the reverse)."""

    id: str
    id_json: str
    state: str

    def sse_position(self) -> str | None: ...

    def gap(self, reason: str, extra: dict[str, Any] | None = None) -> None: ...


# Frames of one event remembered at most (distinct subscription ids of the clients it reaches).
MEMO_MAX = 64


class Encoder(Protocol):
    """Turns deliveries into the transport's frames (websocket JSON text or SSE records)."""

    transport: str

    def event(self, sub: SubscriptionView, envelope_json: str, event_id: str) -> str: ...

    def samples(self, sub: SubscriptionView, body_json: str) -> str: ...

    def message(self, kind: str, payload: dict[str, Any], sse_id: str | None = None) -> str: ...


class WsEncoder:
    """One may serve every websocket: it remembers the last event's frames by subscription id, so that a message
    fanned out to many subscriptions with the same id is framed once (and written as one object)."""

    transport = "ws"

    def __init__(self) -> None:
        self._envelope: str | None = None
        self._frames: dict[str, str] = {}

    def event(self, sub: SubscriptionView, envelope_json: str, event_id: str) -> str:
        # By identity: the dispatcher decodes each message into one string, kept alive here while it is the last.
        if envelope_json is not self._envelope:
            self._envelope, self._frames = envelope_json, {}
        frame = self._frames.get(sub.id_json)
        if frame is None:
            if len(self._frames) >= MEMO_MAX:
                self._frames.clear()
            frame = self._frames[sub.id_json] = event_frame(sub.id_json, envelope_json)
        return frame

    def samples(self, sub: SubscriptionView, body_json: str) -> str:
        return samples_frame(sub.id_json, body_json)

    def message(self, kind: str, payload: dict[str, Any], sse_id: str | None = None) -> str:
        return dumps({"type": kind, **payload})


class SseEncoder:
    transport = "sse"

    def event(self, sub: SubscriptionView, envelope_json: str, event_id: str) -> str:
        return _sse("event", envelope_json, event_id)

    def samples(self, sub: SubscriptionView, body_json: str) -> str:
        return _sse("samples", "{" + body_json + "}", sub.sse_position())

    def message(self, kind: str, payload: dict[str, Any], sse_id: str | None = None) -> str:
        return _sse(kind, dumps({"type": kind, **payload}), sse_id)


def _sse(kind: str, data: str, sse_id: str | None) -> str:
    # An id with a line break cannot be an SSE id (it would end the field); such events go without one.
    head = f"id: {sse_id}\n" if sse_id and "\n" not in sse_id and "\r" not in sse_id else ""
    return f"{head}event: {kind}\ndata: {data}\n\n"
