"""`mqtt`: topic filters on an MQTT broker; JSON payloads (a field by pointer), plain numbers, or Sparkplug B (one
metric by name).

One connection per broker and credentials, shared by every sid on it (`links.SharedLinks`): each sid adds its
topic filter to that connection (QoS 1 by default); a message is handed to every sid whose filter matches. A lost
connection fails every sid on it, so the framework subscribes them again after a jittered backoff on a new one.

TLS: a CA (PEM in the params, or a file under the operator's `TRIBUTARY_MQTT_TLS_DIR`; else the system's CAs), an
optional client certificate (PEM or file) whose private key is a secret, and `server_name`: the name the broker's
certificate is verified against and sent as SNI (default `host`), since the connection itself goes to the address
the egress policy (`TRIBUTARY_HTTP_ALLOW`) checked, never to a second resolution. User name and password (a
secret) with or without TLS. Browsing listens on a topic filter for a bounded time and lists the topics seen and,
for Sparkplug B topics, their metric names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
import uuid
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import aiomqtt
import orjson
from google.protobuf.message import DecodeError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tributary_common.egress import SCHEMA_MARK, SCHEME_MARK, EgressPolicy
from tributary_common.rpc_contracts import BrowseItem
from tributary_common.timeutil import utcnow

from ..sdk import BrowseFailed, Connector, Listing, Refused, SampleValue, Secret, Sink
from ..settings import IngestSettings
from ..values import PointerError, as_sample_value, parse_text_value, parse_timestamp, resolve_pointer, validate_pointer
from . import sparkplug
from .links import SharedLinks
from .pinned import pinned_address

log = logging.getLogger(__name__)
MAX_PEM = 16384
MAX_QUEUED = 10_000  # messages received but not yet handed out, per connection; more are dropped by aiomqtt
MAX_NAME = 1024  # longest topic or metric name browsing lists
FILE_PATTERN = r"^[A-Za-z0-9_.-][A-Za-z0-9_./-]*$"


def check_filter(v: str) -> str:
    levels = v.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic {v!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise ValueError(f"topic {v!r}: '+' must be a whole level")
    return v


class MqttConnection(BaseModel):
    """Which broker and how: what browsing needs, and the first part of a subscription's params."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        min_length=1,
        max_length=253,
        description="MQTT broker host",
        json_schema_extra={SCHEMA_MARK: "host", SCHEME_MARK: "mqtt"},
    )
    port: int = Field(default=1883, ge=1, le=65535, description="1883; usually 8883 with TLS")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    username: str | None = Field(default=None, min_length=1, max_length=256, description="MQTT user name")
    password: Secret | None = Field(default=None, description='MQTT password: a secret reference {"secret": "NAME"}')
    tls: bool = Field(default=False, description="TLS (verified against ca_certificate/ca_file or the system's CAs)")
    server_name: str | None = Field(
        default=None, min_length=1, max_length=253, description="Name to verify and send as SNI (default: host)"
    )
    ca_certificate: str | None = Field(default=None, max_length=MAX_PEM, description="PEM CA certificate(s)")
    ca_file: str | None = Field(
        default=None, max_length=255, pattern=FILE_PATTERN, description="CA file under TRIBUTARY_MQTT_TLS_DIR"
    )
    client_certificate: str | None = Field(default=None, max_length=MAX_PEM, description="PEM client certificate")
    client_certificate_file: str | None = Field(
        default=None,
        max_length=255,
        pattern=FILE_PATTERN,
        description="Client certificate under TRIBUTARY_MQTT_TLS_DIR",
    )
    client_private_key: Secret | None = Field(
        default=None, description='PEM private key of the client certificate: {"secret": "NAME"}'
    )

    @model_validator(mode="after")
    def _consistent(self) -> MqttConnection:
        tls_fields = ("server_name", "ca_certificate", "ca_file", "client_certificate", "client_certificate_file")
        given = [f for f in (*tls_fields, "client_private_key") if getattr(self, f) is not None]
        if given and not self.tls:
            raise ValueError(f"{', '.join(given)} need tls: true")
        if self.ca_certificate is not None and self.ca_file is not None:
            raise ValueError("give ca_certificate or ca_file, not both")
        if self.client_certificate is not None and self.client_certificate_file is not None:
            raise ValueError("give client_certificate or client_certificate_file, not both")
        has_cert = self.client_certificate is not None or self.client_certificate_file is not None
        if has_cert != (self.client_private_key is not None):
            raise ValueError("a client certificate needs client_private_key, and the key needs a certificate")
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        return self

    def key(self) -> Hashable:
        return tuple(getattr(self, f) for f in MqttConnection.model_fields)


class MqttBrowse(MqttConnection):
    listen_s: float = Field(default=2.0, gt=0, le=8.0, description="How long browsing listens for topics")


class MqttParams(MqttConnection):
    topic: str = Field(min_length=1, max_length=1024, description="Topic filter (`+` and `#` allowed)")
    qos: int = Field(default=1, ge=0, le=2)
    payload: Literal["json", "plain", "sparkplug"] = Field(
        default="json", description="`json`, `plain` (a number/text) or `sparkplug` (Sparkplug B, one metric)"
    )
    pointer: str = Field(default="", description="JSON pointer of the value in a JSON payload ('' = whole payload)")
    time_pointer: str | None = Field(default=None, description="JSON pointer of the time (else: arrival time)")
    metric: str | None = Field(
        default=None, min_length=1, max_length=1024, description="Sparkplug B metric name (payload sparkplug)"
    )

    @field_validator("pointer", "time_pointer")
    @classmethod
    def _pointer(cls, v: str | None) -> str | None:
        return None if v is None else validate_pointer(v)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        return check_filter(v)

    @model_validator(mode="after")
    def _metric(self) -> MqttParams:
        if (self.payload == "sparkplug") != (self.metric is not None):
            raise ValueError("payload sparkplug needs metric, and metric needs payload sparkplug")
        return self


class _NamedContext(ssl.SSLContext):
    """Verifies the broker as `server_name` (and sends it as SNI) while paho connects to the checked address."""

    server_name: str

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(sock, *args, **kwargs)


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


class MqttSource(Connector[MqttParams]):
    params_model = MqttParams
    browse_model = MqttBrowse
    capacity = 1000
    # Unconfigured (outside an engine): public addresses only, no TLS folder.
    policy: ClassVar[EgressPolicy] = EgressPolicy()
    tls_dir: ClassVar[Path | None] = None

    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self.links: SharedLinks[_Broker] = SharedLinks(sink.fail)
        self._keys: dict[str, Hashable] = {}

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]]:
        bound = {"policy": settings.egress_policy(), "tls_dir": settings.mqtt_tls_dir}
        return cast(type[Connector[Any]], type(cls.__name__, (cls,), bound))

    async def subscribe(self, sid: str, params: MqttParams) -> None:
        await self.unsubscribe(sid)
        key = params.key()
        broker = await self.links.attach(key, sid, lambda: self._open(params, key))
        self._keys[sid] = key
        try:
            await broker.add(sid, params)
        except BaseException:
            await self.unsubscribe(sid)
            raise

    async def unsubscribe(self, sid: str) -> None:
        key = self._keys.pop(sid, None)
        if key is None:
            return
        broker = self.links.get(key)
        if broker is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await broker.remove(sid)
        await self.links.detach(key, sid)

    async def stop(self) -> None:
        await self.links.close_all()

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
            tls_context=self._tls_context(conn) if conn.tls else None,
            timeout=10.0,
            **kw,
        )
        await client.__aenter__()
        return client

    async def _open(self, conn: MqttConnection, key: Hashable) -> _Broker:
        client = await self._connect(conn, max_queued_incoming_messages=MAX_QUEUED)
        broker = _Broker(client, self.sink)

        async def run() -> None:
            try:
                await broker.run()
            except aiomqtt.MqttError as exc:
                self.links.lost(key, broker, exc)
            else:
                self.links.lost(key, broker, ConnectionError("the broker closed the connection"))

        broker.loop = asyncio.create_task(run(), name=f"mqtt:{conn.host}:{conn.port}")
        return broker

    def _tls_context(self, conn: MqttConnection) -> ssl.SSLContext:
        ctx = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and the name
        ctx.server_name = conn.server_name or conn.host
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ca = conn.ca_certificate or (self._file(conn.ca_file, "ca_file") if conn.ca_file else None)
        try:
            if ca is None:
                ctx.load_default_certs()
            else:
                ctx.load_verify_locations(cadata=ca)
        except (ssl.SSLError, ValueError) as exc:
            raise BadCertificate(
                f"{'ca_certificate' if conn.ca_certificate else 'ca_file'} is not PEM ({exc})"
            ) from None
        if conn.client_private_key is not None:
            cert = conn.client_certificate or self._file(
                cast(str, conn.client_certificate_file), "client_certificate_file"
            )
            try:
                with _private_file(cert) as cert_path, _private_file(conn.client_private_key) as key_path:
                    ctx.load_cert_chain(cert_path, key_path)
            except (ssl.SSLError, ValueError) as exc:  # the message never quotes the key
                raise BadCertificate(
                    f"the client certificate and client_private_key are not a PEM pair ({type(exc).__name__})"
                ) from None
        return ctx

    def _file(self, name: str, what: str) -> str:
        """A PEM file under the operator's TLS folder, never outside it."""
        if self.tls_dir is None:
            raise Refused(f"{what} needs TRIBUTARY_MQTT_TLS_DIR to be set")
        root = self.tls_dir.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root):
            raise Refused(f"{what} {name!r} is outside TRIBUTARY_MQTT_TLS_DIR")
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            raise Refused(f"{what} {name!r} is hidden (a dot file or folder): never read")
        try:
            with path.open("rb") as f:
                data = f.read(MAX_PEM + 1)
        except OSError as exc:
            raise BadCertificate(f"{what} {name!r} cannot be read ({exc.strerror})") from None
        if len(data) > MAX_PEM:
            raise BadCertificate(f"{what} {name!r} is over {MAX_PEM} bytes")
        return data.decode("ascii", errors="replace")

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


class BadCertificate(ValueError):
    """A certificate or key of the params that cannot be read."""


@contextlib.contextmanager
def _private_file(text: str) -> Iterator[str]:
    """`text` as a file path for `ssl` (which reads only files): a memory file where there are, else a 0600 temporary
    file removed at once."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("tributary-tls", 0)
        try:
            os.write(fd, text.encode())
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(text)
        f.flush()
        yield f.name
