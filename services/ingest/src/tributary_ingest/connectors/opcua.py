"""`opcua`: OPC UA subscriptions (monitored items) with `asyncua`, history read for backfill, and browsing.

One session per endpoint and credentials, shared by every sid on it; within it one subscription per publishing
interval, one monitored item per sid (its sampling interval, deadband and queue size). A lost session fails every
sid on it: the framework subscribes them again after a jittered backoff on a new session (re-subscription), first
reading each sid's history from its watermark (`HistoryRead`, raw) when the server keeps it.

Status codes become the sample quality: Good is no quality (the default), anything else its name
(`UncertainLastUsableValue`, `BadSensorFailure` …); a Bad sample carries no value. Security: policy `None`, or
`Basic256Sha256` with `Sign` or `SignAndEncrypt` and a client certificate (PEM) whose private key is a secret;
user name and password (a secret) on any policy. The endpoint is checked against `TRIBUTARY_HTTP_ALLOW` on its
resolved address and connected to at that address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Hashable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, cast
from urllib.parse import urlsplit, urlunsplit

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tributary_common.egress import SCHEMA_MARK, EgressPolicy
from tributary_common.rpc_contracts import BrowseItem
from tributary_common.timeutil import format_time, utcnow

from ..sdk import BrowseFailed, Connector, HistoryRow, Listing, Quality, SampleValue, Secret, Sink
from ..settings import IngestSettings
from .links import SharedLinks
from .pinned import netloc, pinned_address

log = logging.getLogger(__name__)
ENDPOINT_PATTERN = r"^opc\.tcp://[^\s/?#@]+(/[^\s?#]*)?$"
MAX_PEM = 16384


class OpcuaConnection(BaseModel):
    """Where and how to connect: what browsing needs, and the first part of a subscription's params."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(
        max_length=1024,
        pattern=ENDPOINT_PATTERN,
        description="opc.tcp://host:port/path of the server",
        json_schema_extra={SCHEMA_MARK: "url"},
    )
    security_policy: Literal["None", "Basic256Sha256"] = Field(default="None", description="Security policy")
    security_mode: Literal["Sign", "SignAndEncrypt"] = Field(
        default="SignAndEncrypt", description="Message security mode with Basic256Sha256"
    )
    client_certificate: str | None = Field(
        default=None, max_length=MAX_PEM, description="PEM client certificate (Basic256Sha256)"
    )
    client_private_key: Secret | None = Field(
        default=None, description='PEM private key of the client certificate: {"secret": "NAME"}'
    )
    server_certificate: str | None = Field(
        default=None, max_length=MAX_PEM, description="PEM server certificate to pin (else the one the server lists)"
    )
    username: str | None = Field(default=None, min_length=1, max_length=256)
    password: Secret | None = Field(default=None, description='{"secret": "NAME"}')
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Seconds for a request or a connection")

    @model_validator(mode="after")
    def _security(self) -> OpcuaConnection:
        if self.security_policy != "None" and not (self.client_certificate and self.client_private_key):
            raise ValueError(f"security_policy {self.security_policy} needs client_certificate and client_private_key")
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        return self

    def key(self) -> Hashable:
        return tuple(getattr(self, f) for f in OpcuaConnection.model_fields)


class OpcuaParams(OpcuaConnection):
    node: str = Field(min_length=1, max_length=512, description="NodeId, e.g. ns=2;s=Tank.Level or i=2258")
    sampling_interval_ms: float = Field(default=1000.0, ge=0, le=86_400_000, description="0: the server's fastest")
    publishing_interval_ms: float = Field(default=1000.0, ge=50, le=86_400_000)
    queue_size: int = Field(default=1, ge=1, le=10_000, description="Values the server queues between publishes")
    deadband: float = Field(default=0.0, ge=0, description="0: every change; else the deadband's size")
    deadband_type: Literal["absolute", "percent"] = Field(default="absolute")

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        _node_id(v)
        return v


def _node_id(text: str) -> ua.NodeId:
    try:
        return ua.NodeId.from_string(text)
    except Exception as exc:  # noqa: BLE001 - asyncua raises several kinds for a bad string
        raise ValueError(f"{text!r} is not a NodeId ({exc})") from None


def quality(status: ua.StatusCode | None) -> Quality:
    if status is None or status.is_good():
        return None
    return status.name


def sample_value(value: Any) -> SampleValue:
    """A Variant's value as a sample value; `TypeError` for what has no scalar form (arrays, structures)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return format_time(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, ua.NodeId):
        return value.to_string()
    raise TypeError(f"a {type(value).__name__} value has no sample form")


def _time(dv: ua.DataValue) -> datetime:
    t = dv.SourceTimestamp or dv.ServerTimestamp
    if t is None:
        return utcnow()
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class _Session:
    """One client session (a link) with its subscriptions, one per publishing interval."""

    def __init__(self, client: Client, sink: Sink) -> None:
        self.client = client
        self.sink = sink
        self.subscriptions: dict[float, Subscription] = {}
        self.items: dict[str, tuple[float, int, int]] = {}  # sid -> (interval, client handle, server handle)
        self.by_handle: dict[int, str] = {}
        self._next_handle = 1

    async def monitor(self, sid: str, p: OpcuaParams) -> None:
        sub = self.subscriptions.get(p.publishing_interval_ms)
        if sub is None:
            sub = await self.client.create_subscription(p.publishing_interval_ms, self)
            self.subscriptions[p.publishing_interval_ms] = sub
        request = ua.MonitoredItemCreateRequest()
        value_attribute = ua.AttributeIds.Value  # type: ignore[attr-defined]
        request.ItemToMonitor = ua.ReadValueId(NodeId=_node_id(p.node), AttributeId=value_attribute)
        request.MonitoringMode = ua.MonitoringMode.Reporting
        params = ua.MonitoringParameters()
        params.ClientHandle = handle = self._next_handle
        self._next_handle += 1
        params.SamplingInterval = p.sampling_interval_ms
        params.QueueSize = p.queue_size
        params.DiscardOldest = True
        if p.deadband > 0:
            params.Filter = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue,
                DeadbandType=1 if p.deadband_type == "absolute" else 2,
                DeadbandValue=p.deadband,
            )
        request.RequestedParameters = params
        self.by_handle[handle] = sid  # before the request: the first value may come before its answer
        try:
            result = (await sub.create_monitored_items([request]))[0]
            if isinstance(result, ua.StatusCode):
                result.check()
        except BaseException:
            self.by_handle.pop(handle, None)
            raise
        self.items[sid] = (p.publishing_interval_ms, handle, cast(int, result))

    async def unmonitor(self, sid: str) -> None:
        item = self.items.pop(sid, None)
        if item is None:
            return
        interval, handle, server_handle = item
        self.by_handle.pop(handle, None)
        sub = self.subscriptions.get(interval)
        if sub is None:
            return
        await sub.unsubscribe(server_handle)
        if not any(i[0] == interval for i in self.items.values()):
            del self.subscriptions[interval]
            await sub.delete()

    # asyncua's subscription handler
    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        sid = self.by_handle.get(data.monitored_item.ClientHandle)
        if sid is None:
            return
        dv = data.monitored_item.Value
        q = quality(dv.StatusCode)
        try:
            v = None if dv.StatusCode is not None and dv.StatusCode.is_bad() else sample_value(val)
        except TypeError as exc:
            self.sink.warn(sid, f"{node.nodeid.to_string()}: {exc}")
            return
        self.sink.emit(sid, _time(dv), v, q)

    def status_change_notification(self, status: Any) -> None:
        log.info("OPC UA subscription status changed: %s", status)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.client.disconnect()


class OpcuaSource(Connector[OpcuaParams]):
    params_model = OpcuaParams
    browse_model = OpcuaConnection
    capacity = 2000
    # Unconfigured (outside an engine): public addresses only.
    policy: ClassVar[EgressPolicy] = EgressPolicy()

    def __init__(self, sink: Sink) -> None:
        super().__init__(sink)
        self.links: SharedLinks[_Session] = SharedLinks(sink.fail)
        self._keys: dict[str, Hashable] = {}

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]]:
        return cast(type[Connector[Any]], type(cls.__name__, (cls,), {"policy": settings.egress_policy()}))

    async def _open(self, conn: OpcuaConnection, key: Hashable) -> _Session:
        url = urlsplit(conn.endpoint)
        if url.hostname is None:
            raise BrowseFailed(f"endpoint {conn.endpoint!r} has no host")
        port = url.port or 4840
        address = await pinned_address(
            self.policy, url.hostname, "opc.tcp", port, url.path or "/", timeout_s=conn.timeout_s
        )
        client = Client(urlunsplit(("opc.tcp", netloc(address, port), url.path, "", "")), timeout=conn.timeout_s)
        if conn.username is not None:
            client.set_user(conn.username)
        if conn.password is not None:
            client.set_password(conn.password)
        if conn.security_policy == "Basic256Sha256":
            assert conn.client_certificate is not None and conn.client_private_key is not None
            cert = _pem_cert(conn.client_certificate, "client_certificate")
            client.application_uri = _application_uri(cert) or client.application_uri
            key = _pem_key(conn.client_private_key)
            mode = getattr(ua.MessageSecurityMode, conn.security_mode)
            server = _pem_cert(conn.server_certificate, "server_certificate") if conn.server_certificate else None
            der = serialization.Encoding.DER  # asyncua reads bytes as DER
            async with asyncio.timeout(conn.timeout_s * 2):
                await client.set_security(
                    SecurityPolicyBasic256Sha256,
                    certificate=cert.public_bytes(der),
                    private_key=key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
                    server_certificate=None if server is None else server.public_bytes(der),
                    mode=mode,
                )
        async with asyncio.timeout(conn.timeout_s * 2):
            await client.connect(auto_reconnect=False)
        session = _Session(client, self.sink)

        async def lost(exc: Exception) -> None:
            self.links.lost(key, session, exc)

        client.connection_lost_callback = lost
        return session

    async def _session(self, conn: OpcuaConnection, sid: str) -> _Session:
        key = conn.key()
        return await self.links.attach(key, sid, lambda: self._open(conn, key))

    async def subscribe(self, sid: str, params: OpcuaParams) -> None:
        await self.unsubscribe(sid)
        session = await self._session(params, sid)
        self._keys[sid] = params.key()
        try:
            await session.monitor(sid, params)
        except BaseException:
            await self.unsubscribe(sid)
            raise

    async def unsubscribe(self, sid: str) -> None:
        key = self._keys.pop(sid, None)
        if key is None:
            return
        session = self.links.get(key)
        if session is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await session.unmonitor(sid)
        await self.links.detach(key, sid)

    async def stop(self) -> None:
        await self.links.close_all()

    async def history(
        self, sid: str, params: OpcuaParams, since: datetime, until: datetime
    ) -> AsyncIterator[HistoryRow]:
        """HistoryRead (raw) of the node over the sid's own session, continuation points followed."""
        session = self.links.get(params.key())
        if session is None:
            return
        node = session.client.get_node(_node_id(params.node))
        values = await node.read_raw_history(starttime=since, endtime=until, numvalues=0, return_bounds=False)
        for dv in sorted(values, key=_time):
            t = _time(dv)
            if not since < t <= until:
                continue
            try:
                v = (
                    None
                    if dv.StatusCode is not None and dv.StatusCode.is_bad()
                    else sample_value(None if dv.Value is None else dv.Value.Value)
                )
            except TypeError:
                continue
            yield t, v, quality(dv.StatusCode)

    async def browse(self, path: str, params: Any, limit: int) -> Listing:
        conn = cast(OpcuaConnection, params)
        start = path or "i=85"  # the Objects folder
        try:
            node_id = _node_id(start)
        except ValueError as exc:
            raise BrowseFailed(str(exc)) from None
        session = self.links.get(conn.key())
        own = session is None
        if session is None:
            session = await self._open(conn, object())
        try:
            children = await session.client.get_node(node_id).get_children_descriptions()
        finally:
            if own:
                await session.close()
        items = []
        for ref in children[: limit + 1]:
            is_variable = ref.NodeClass == ua.NodeClass.Variable
            node = ref.NodeId.to_string()
            items.append(
                BrowseItem(
                    name=ref.DisplayName.Text or ref.BrowseName.Name or node,
                    path=node,
                    kind=ref.NodeClass.name.lower(),
                    has_children=ref.NodeClass in (ua.NodeClass.Object, ua.NodeClass.View),
                    params={"node": node} if is_variable else None,
                )
            )
        return Listing(items=items[:limit], truncated=len(items) > limit)


def _pem_cert(pem: str, field: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise BadCertificate(f"{field} is not a PEM certificate ({exc})") from None


def _pem_key(pem: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:  # the message never quotes the key
        raise BadCertificate(
            f"client_private_key is not an unencrypted PEM private key ({type(exc).__name__})"
        ) from None


class BadCertificate(ValueError):
    """A certificate or key in the params that cannot be read."""


def _application_uri(cert: x509.Certificate) -> str | None:
    """The URI in the certificate's subjectAltName: the client's application URI must be it."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
