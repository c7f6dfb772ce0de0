"""The websocket protocol's client frames (`op`), parsed and checked (server frames: frames.py).

Every problem with a client frame becomes a `FrameError` whose code and message say what is wrong and where;
the endpoint turns it into an `error` frame and keeps the connection open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from tributary_common.events import EVENT_ID_MAX
from tributary_common.names import InvalidName, validate_pattern, validate_unitop_name
from tributary_common.stream_frames import SUB_ID_MAX
from tributary_common.timeutil import parse_time

MAX_SUB_ID = SUB_ID_MAX  # the published frame models' bound


class FrameError(Exception):
    """A client frame the server refuses: `code` is machine-readable, `id` the frame's id when it had one."""

    def __init__(self, code: str, message: str, frame_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


@dataclass(frozen=True)
class EventsSince:
    """Where an events catch-up starts: after an event id (preferred) or from a time (inclusive)."""

    after_id: str | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class UnitopSince:
    """Where a unitop catch-up starts: samples with t > the item's time (or `time` for items not named)."""

    time: datetime | None = None
    items: dict[str, datetime] | None = None

    def for_item(self, item: str) -> datetime | None:
        if self.items is not None and item in self.items:
            return self.items[item]
        return self.time


@dataclass(frozen=True)
class SubscribeEvents:
    id: str
    pattern: str
    since: EventsSince | None


@dataclass(frozen=True)
class SubscribeUnitop:
    id: str
    name: str
    items: tuple[str, ...] | None
    since: UnitopSince | None


@dataclass(frozen=True)
class Unsubscribe:
    id: str


@dataclass(frozen=True)
class Ping:
    id: str | None


ClientFrame = SubscribeEvents | SubscribeUnitop | Unsubscribe | Ping


def parse_frame(raw: str | bytes, max_bytes: int) -> ClientFrame:
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise FrameError("frame_too_large", f"frame of {size} bytes is over the limit of {max_bytes} bytes")
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError("invalid_json", f"frame is not valid JSON: {exc}") from None
    if not isinstance(frame, dict):
        raise FrameError("invalid_frame", f"frame must be a JSON object, not {_kind(frame)}")
    frame_id = frame.get("id")
    safe_id = frame_id if isinstance(frame_id, str) and 0 < len(frame_id) <= MAX_SUB_ID else None
    try:
        return _parse(frame)
    except FrameError as exc:
        exc.frame_id = exc.frame_id or safe_id
        raise


def _parse(frame: dict[str, Any]) -> ClientFrame:
    op = frame.get("op")
    if op is None:
        raise FrameError("invalid_frame", "/op: missing (one of 'subscribe', 'unsubscribe', 'ping')")
    if op == "ping":
        _only(frame, {"op", "id"}, "")
        fid = frame.get("id")
        if fid is not None and (not isinstance(fid, str | int) or isinstance(fid, bool)):
            raise FrameError("invalid_frame", f"/id: must be a string, not {_kind(fid)}")
        ping_id = None if fid is None else str(fid)
        # The pong echoes the id: bounded like a subscription id, so that echoes cannot amplify.
        if ping_id is not None and len(ping_id) > MAX_SUB_ID:
            raise FrameError("invalid_frame", f"/id: at most {MAX_SUB_ID} characters, not {len(ping_id)}")
        return Ping(id=ping_id)
    if op == "unsubscribe":
        _only(frame, {"op", "id"}, "")
        return Unsubscribe(id=_sub_id(frame))
    if op == "subscribe":
        sub_id = _sub_id(frame)
        has_events, has_unitop = "events" in frame, "unitop" in frame
        if has_events == has_unitop:
            raise FrameError("invalid_frame", "subscribe needs exactly one of /events or /unitop", sub_id)
        _only(frame, {"op", "id", "events", "unitop"}, "")
        if has_events:
            return _subscribe_events(sub_id, frame["events"])
        return _subscribe_unitop(sub_id, frame["unitop"])
    raise FrameError("unknown_op", f"/op: unknown op {_show(op)} (one of 'subscribe', 'unsubscribe', 'ping')")


def _subscribe_events(sub_id: str, spec: Any) -> SubscribeEvents:
    spec = _spec(spec, "/events", {"pattern", "since"}, sub_id)
    pattern = _name(spec, "/events/pattern", validate_pattern, "invalid_pattern", sub_id)
    since = spec.get("since")
    return SubscribeEvents(id=sub_id, pattern=pattern, since=None if since is None else events_since(since, sub_id))


def events_since(value: Any, sub_id: str | None = None, where: str = "/events/since") -> EventsSince:
    """A time (RFC 3339 with offset), an event id, or `{"id"?, "time"?}` (a `gap` frame's `last`)."""
    if isinstance(value, str) and value:
        t = _maybe_time(value)
        return EventsSince(time=t) if t is not None else EventsSince(after_id=_event_id(value, where, sub_id))
    if isinstance(value, dict):
        _only(value, {"id", "time"}, where)
        eid, t = value.get("id"), value.get("time")
        if eid is not None:
            if not isinstance(eid, str) or not eid:
                raise FrameError("invalid_frame", f"{where}/id: must be a non-empty string", sub_id)
            return EventsSince(after_id=_event_id(eid, f"{where}/id", sub_id))
        if t is not None:
            return EventsSince(time=_time(t, f"{where}/time", sub_id))
    raise FrameError("invalid_since", f"{where}: a time, an event id or {{'id', 'time'}} is required", sub_id)


def _event_id(value: str, where: str, sub_id: str | None) -> str:
    # No event has a longer id (the hub's publish limit): refused now, rather than asked of the hub (a frame's
    # worth of text per request) again and again for REPLAY_UNKNOWN_ID_WAIT_S before `not_found`.
    if len(value) > EVENT_ID_MAX:
        raise FrameError("invalid_since", f"{where}: an event id has at most {EVENT_ID_MAX} characters", sub_id)
    return value


def _subscribe_unitop(sub_id: str, spec: Any) -> SubscribeUnitop:
    spec = _spec(spec, "/unitop", {"name", "items", "since"}, sub_id)
    name = _name(spec, "/unitop/name", validate_unitop_name, "invalid_unitop", sub_id)
    items = spec.get("items")
    if items is not None:
        if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
            raise FrameError("invalid_frame", "/unitop/items: must be a non-empty list of item names", sub_id)
        items = tuple(dict.fromkeys(items))
    since = spec.get("since")
    return SubscribeUnitop(
        id=sub_id, name=name, items=items, since=None if since is None else unitop_since(since, sub_id)
    )


def unitop_since(value: Any, sub_id: str | None = None, where: str = "/unitop/since") -> UnitopSince:
    """A time, or `{"time"?, "items"?: {item: time}}` (a `gap` frame's `last`)."""
    if isinstance(value, str):
        return UnitopSince(time=_time(value, where, sub_id))
    if isinstance(value, dict):
        _only(value, {"time", "items"}, where)
        t = value.get("time")
        items = value.get("items")
        parsed: dict[str, datetime] | None = None
        if items is not None:
            if not isinstance(items, dict):
                raise FrameError("invalid_frame", f"{where}/items: must be an object of item -> time", sub_id)
            parsed = {str(k): _time(v, f"{where}/items/{k}", sub_id) for k, v in items.items()}
        return UnitopSince(time=None if t is None else _time(t, f"{where}/time", sub_id), items=parsed)
    raise FrameError("invalid_since", f"{where}: a time or {{'time', 'items'}} is required", sub_id)


def _spec(spec: Any, where: str, allowed: set[str], sub_id: str) -> dict[str, Any]:
    """A subscribe frame's `events` or `unitop` object, with only the fields it may have."""
    if not isinstance(spec, dict):
        raise FrameError("invalid_frame", f"{where}: must be an object, not {_kind(spec)}", sub_id)
    _only(spec, allowed, where)
    return spec


def _name(spec: dict[str, Any], where: str, validate: Callable[[str], object], code: str, sub_id: str) -> str:
    key = where.rsplit("/", 1)[1]
    value = spec.get(key)
    if not isinstance(value, str):
        raise FrameError("invalid_frame", f"{where}: must be a string, not {_kind(value)}", sub_id)
    return checked_name(value, validate, code, where, sub_id)


def checked_name(
    value: str, validate: Callable[[str], object], code: str, where: str = "", sub_id: str | None = None
) -> str:
    """A pattern or unitop name by common's rules: their `InvalidName` becomes a `FrameError`, the one error type
    of what clients send (its message names `where`, when given)."""
    try:
        validate(value)
    except InvalidName as exc:
        raise FrameError(code, f"{where}: {exc}" if where else str(exc), sub_id) from None
    return value


def _sub_id(frame: dict[str, Any]) -> str:
    sub_id = frame.get("id")
    if not isinstance(sub_id, str) or not sub_id or len(sub_id) > MAX_SUB_ID:
        raise FrameError("invalid_frame", f"/id: must be a string of 1-{MAX_SUB_ID} characters")
    return sub_id


def _only(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(str(k) for k in obj if k not in allowed)
    if extra:
        raise FrameError(
            "invalid_frame",
            f"{where}/{_show(extra[0], quote=False)}: unknown field (allowed: {', '.join(sorted(allowed))})",
        )


def _maybe_time(value: str) -> datetime | None:
    # Only something shaped like a timestamp counts as one; anything else is an event id.
    if len(value) < 20 or not value[:4].isdigit() or value[4] != "-" or value[10:11] not in ("T", "t", " "):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _time(value: Any, where: str, sub_id: str | None) -> datetime:
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError as exc:
            raise FrameError("invalid_since", f"{where}: {exc}", sub_id) from None
    raise FrameError("invalid_since", f"{where}: must be an RFC 3339 time with offset, not {_kind(value)}", sub_id)


def _show(value: Any, *, quote: bool = True, limit: int = 40) -> str:
    """A client value inside a message: its repr, cut short (error frames never echo much of what was sent)."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
