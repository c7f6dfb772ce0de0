"""`mqtt`: topic filters on an MQTT broker; JSON payloads (a field by pointer), plain numbers, or Sparkplug B (one
metric by name).

One connection per broker and credentials, shared by every sid on it (`links.LinkedConnector`): each sid adds its
topic filter to that connection (QoS 1 by default); a message is handed to every sid whose filter matches. A lost
connection fails every sid on it, so the framework subscribes them again after a jittered backoff on a new one.

The params and their TLS are in `mqtt_settings` and `mqtt_tls`. Browsing listens on a topic filter for a bounded
time and lists the topics seen and, for Sparkplug B topics, their metric names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Hashable
from pathlib import Path
from typing import Any, ClassVar, cast

import aiomqtt
import orjson
from google.protobuf.message import DecodeError

from tributary_common.egress import EgressPolicy
from tributary_common.rpc_contracts import BrowseItem
from tributary_common.timeutil import utcnow

from ..sdk import BrowseFailed, Connector, Listing, SampleValue, Sink
from ..settings import IngestSettings
from ..values import PointerError, as_sample_value, parse_text_value, parse_timestamp, resolve_pointer
from . import sparkplug
from .links import LinkedConnector
from .mqtt_settings import MqttBrowse, MqttConnection, MqttParams, check_filter
from .mqtt_tls import tls_context
from .pinned import pinned_address

__all__ = ["MqttBrowse", "MqttConnection", "MqttParams", "MqttSource"]

log = logging.getLogger(__name__)
MAX_QUEUED = 10_000  # messages received but not yet handed out, per connection; more are dropped by aiomqtt
MAX_NAME = 1024  # longest topic or metric name browsing lists


class _Broker:
    """One connection (a link): its topic filters, the sids on each, the Sparkplug births it has seen."""

    def __init__(self, client: aiomqtt.Client, sink: Sink) -> None:
        self.client = client
        self.sink = sink
        self.subs: dict[str, MqttParams] = {}
        self.granted: dict[str, int] = {}  # topic filter -> QoS subscribed with
        self.births = sparkplug.Births()
        self.loop: asyncio.Task[None] | None = None

    async def add(self, sid: str, p: MqttParams) -> None:
        self.subs[sid] = p
        if self.granted.get(p.topic, -1) < p.qos:
            await self.client.subscribe(p.topic, qos=p.qos)
            self.granted[p.topic] = p.qos

    async def remove(self, sid: str) -> None:
        p = self.subs.pop(sid, None)
        if p is None or any(o.topic == p.topic for o in self.subs.values()):
            return
        del self.granted[p.topic]
        await self.client.unsubscribe(p.topic)

    async def run(self) -> None:
        async for message in self.client.messages:
            self.dispatch(message.topic, message.payload)

    def dispatch(self, topic: aiomqtt.Topic, payload: Any) -> None:
        raw = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
        metrics: dict[str, sparkplug.MetricSample] | None = None
        for sid, p in list(self.subs.items()):
            if not topic.matches(p.topic):
                continue
            if p.payload != "sparkplug":
                _plain_sample(self.sink, sid, p, raw)
                continue
            if metrics is None:
                metrics = self._sparkplug(topic.value, raw, sid)
            m = metrics.get(cast(str, p.metric))
            if m is None:
                continue
            if m.problem is not None:
                self.sink.warn(sid, f"{topic.value}: metric {m.name!r}: {m.problem}")
            else:
                self.sink.emit(sid, m.t or utcnow(), m.value)

    def _sparkplug(self, topic: str, raw: bytes, sid: str) -> dict[str, sparkplug.MetricSample]:
        parsed = sparkplug.parse_topic(topic)
        if parsed is None or parsed.kind not in sparkplug.DATA_TYPES:
            return {}  # DEATH, CMD, STATE: nothing to sample
        try:
            return {m.name: m for m in self.births.decode(parsed, bytes(raw))}
        except DecodeError as exc:
            self.sink.warn(sid, f"{topic}: not a Sparkplug B payload ({exc})")
            return {}

    async def close(self) -> None:
        if self.loop is not None:
            self.loop.cancel()
            with contextlib.suppress(BaseException):
                await self.loop
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.client.__aexit__(None, None, None)


def _plain_sample(sink: Sink, sid: str, p: MqttParams, raw: bytes) -> None:
    t = utcnow()
    value: SampleValue
    try:
        if p.payload == "plain":
            value = parse_text_value(bytes(raw).decode("utf-8"))
        else:
            doc = orjson.loads(raw)
            value = as_sample_value(resolve_pointer(doc, p.pointer), f"value at {p.pointer!r}")
            if p.time_pointer is not None:
                t = parse_timestamp(resolve_pointer(doc, p.time_pointer))
    except (PointerError, ValueError) as exc:  # orjson.JSONDecodeError and UnicodeDecodeError are ValueErrors
        sink.warn(sid, f"payload skipped: {exc}")
        return
    sink.emit(sid, t, value)


class MqttSource(LinkedConnector[MqttParams, _Broker]):
    params_model = MqttParams
    browse_model = MqttBrowse
    capacity = 1000
    # Unconfigured (outside an engine): public addresses only, no TLS folder.
    policy: ClassVar[EgressPolicy] = EgressPolicy()
    tls_dir: ClassVar[Path | None] = None

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]]:
        bound = {"policy": settings.egress_policy(), "tls_dir": settings.mqtt_tls_dir}
        return cast(type[Connector[Any]], type(cls.__name__, (cls,), bound))

    def link_key(self, params: MqttParams) -> Hashable:
        return params.key()

    async def join(self, link: _Broker, sid: str, params: MqttParams) -> None:
        await link.add(sid, params)

    async def leave(self, link: _Broker, sid: str) -> None:
        await link.remove(sid)

    async def _connect(self, conn: MqttConnection, **kw: Any) -> aiomqtt.Client:
        scheme = "mqtts" if conn.tls else "mqtt"
        address = await pinned_address(self.policy, conn.host, scheme, conn.port)
        client = aiomqtt.Client(
            address,  # the checked address: no second resolution between check and connect
            conn.port,
            identifier=f"tributary-{uuid.uuid4().hex[:12]}",
            keepalive=conn.keepalive_s,
            username=conn.username,
            password=conn.password,
            tls_context=tls_context(conn, self.tls_dir) if conn.tls else None,
            timeout=10.0,
            **kw,
        )
        await client.__aenter__()
        return client

    async def open_link(self, params: MqttParams, key: Hashable) -> _Broker:
        client = await self._connect(params, max_queued_incoming_messages=MAX_QUEUED)
        broker = _Broker(client, self.sink)

        async def run() -> None:
            try:
                await broker.run()
            except aiomqtt.MqttError as exc:
                self.links.lost(key, broker, exc)
            else:
                self.links.lost(key, broker, ConnectionError("the broker closed the connection"))

        broker.loop = asyncio.create_task(run(), name=f"mqtt:{params.host}:{params.port}")
        return broker

    async def browse(self, path: str, params: Any, limit: int) -> Listing:
        conn = cast(MqttBrowse, params)
        topic_filter = path or "#"
        try:
            check_filter(topic_filter)
        except ValueError as exc:
            raise BrowseFailed(str(exc)) from None
        try:
            client = await self._connect(conn, max_queued_incoming_messages=MAX_QUEUED)
        except aiomqtt.MqttError as exc:
            raise BrowseFailed(f"the broker refused or dropped the connection: {exc}") from None
        seen: dict[tuple[str, str | None], BrowseItem] = {}
        births = sparkplug.Births()
        try:
            await client.subscribe(topic_filter, qos=0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(conn.listen_s):
                    async for message in client.messages:
                        _seen(seen, births, message.topic.value, message.payload)
                        if len(seen) > limit:
                            break
        finally:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
        items = sorted(seen.values(), key=lambda i: i.path)
        return Listing(
            items=items[:limit],
            truncated=len(items) > limit,
            note=f"topics seen on {topic_filter!r} within {conn.listen_s} s (retained ones at once, others only if sent)",
        )


def _seen(seen: dict[tuple[str, str | None], BrowseItem], births: sparkplug.Births, topic: str, payload: Any) -> None:
    if len(topic) > MAX_NAME:
        return  # a topic (or metric) no item could name: a listing is for people, not a dump of the broker
    parsed = sparkplug.parse_topic(topic)
    if parsed is None or parsed.kind not in sparkplug.DATA_TYPES:
        seen.setdefault((topic, None), BrowseItem(name=topic, path=topic, kind="topic", params={"topic": topic}))
        return
    # One Sparkplug subscription reads BIRTH and DATA alike: the message type becomes '+'.
    parts = topic.split("/")
    parts[2] = "+"
    filt = "/".join(parts)
    raw = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
    try:
        metrics = births.decode(parsed, bytes(raw))
    except DecodeError:
        return
    for m in metrics:
        if (m.name.startswith("alias ") and m.problem) or len(m.name) > MAX_NAME:
            continue
        seen.setdefault(
            (filt, m.name),
            BrowseItem(
                name=m.name,
                path=f"{filt}#{m.name}"[:4096],
                kind="metric",
                params={"topic": filt, "payload": "sparkplug", "metric": m.name},
            ),
        )
