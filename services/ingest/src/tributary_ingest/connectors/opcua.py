"""`opcua`: OPC UA subscriptions (monitored items) with `asyncua`, history read for backfill, and browsing.

One session per endpoint and credentials, shared by every sid on it (`links.LinkedConnector`); within it one
subscription per publishing interval, one monitored item per sid (its sampling interval, deadband and queue size). A
lost session fails every sid on it: the framework subscribes them again after a jittered backoff on a new session
(re-subscription), first reading each sid's history from its watermark (`HistoryRead`, raw) when the server keeps it.

Status codes become the sample quality: Good is no quality (the default), anything else its name
(`UncertainLastUsableValue`, `BadSensorFailure` …); a Bad sample carries no value. Security (`opcua_security`):
policy `None`, or `Basic256Sha256` with `Sign` or `SignAndEncrypt` and a client certificate (PEM) whose private key
is a secret; user name and password (a secret) on any policy. The endpoint is checked against
`TRIBUTARY_HTTP_ALLOW` on its resolved address and connected to at that address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Hashable
from datetime import UTC, datetime
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit, urlunsplit

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription

from tributary_common.egress import EgressPolicy
from tributary_common.rpc_contracts import BrowseItem
from tributary_common.timeutil import format_time, utcnow

from ..sdk import BrowseFailed, Connector, HistoryRow, Listing, Quality, SampleValue, Sink
from ..settings import IngestSettings
from .links import LinkedConnector
from .opcua_security import secure
from .opcua_settings import OpcuaConnection, OpcuaParams, node_id
from .pinned import netloc, pinned_address

__all__ = ["OpcuaConnection", "OpcuaParams", "OpcuaSource"]

log = logging.getLogger(__name__)


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
        request.ItemToMonitor = ua.ReadValueId(NodeId=node_id(p.node), AttributeId=value_attribute)
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


class OpcuaSource(LinkedConnector[OpcuaParams, _Session]):
    params_model = OpcuaParams
    browse_model = OpcuaConnection
    capacity = 2000
    history_page: ClassVar[int] = 10_000  # values per HistoryRead request during a backfill
    # Unconfigured (outside an engine): public addresses only.
    policy: ClassVar[EgressPolicy] = EgressPolicy()

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]]:
        return cast(type[Connector[Any]], type(cls.__name__, (cls,), {"policy": settings.egress_policy()}))

    def link_key(self, params: OpcuaParams) -> Hashable:
        return params.key()

    async def join(self, link: _Session, sid: str, params: OpcuaParams) -> None:
        await link.monitor(sid, params)

    async def leave(self, link: _Session, sid: str) -> None:
        await link.unmonitor(sid)

    async def open_link(self, conn: OpcuaConnection, key: Hashable) -> _Session:  # browsing opens one too
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
            await secure(client, conn)
        async with asyncio.timeout(conn.timeout_s * 2):
            await client.connect(auto_reconnect=False)
        session = _Session(client, self.sink)

        async def lost(exc: Exception) -> None:
            self.links.lost(key, session, exc)

        client.connection_lost_callback = lost
        return session

    async def history(
        self, sid: str, params: OpcuaParams, since: datetime, until: datetime
    ) -> AsyncIterator[HistoryRow]:
        """HistoryRead (raw) of the node over the sid's own session, `history_page` values a request, each page
        starting after the last time of the one before: what a server answers is held a page at a time (read whole
        through its continuation points, a long gap was every value in memory at once)."""
        session = self.links.get(params.key())
        if session is None:
            return
        node = session.client.get_node(node_id(params.node))
        after = since
        while True:
            values = await node.read_raw_history(
                starttime=after, endtime=until, numvalues=self.history_page, return_bounds=False
            )
            last = after
            for dv in sorted(values, key=_time):
                t = _time(dv)
                if not after < t <= until:
                    continue
                last = t
                try:
                    v = (
                        None
                        if dv.StatusCode is not None and dv.StatusCode.is_bad()
                        else sample_value(None if dv.Value is None else dv.Value.Value)
                    )
                except TypeError:
                    continue
                yield t, v, quality(dv.StatusCode)
            # A short page is the last; a full one that did not move past `after` (a server answering the same
            # values again) would be asked for forever.
            if len(values) < self.history_page or last <= after:
                return
            after = last

    async def browse(self, path: str, params: Any, limit: int) -> Listing:
        conn = cast(OpcuaConnection, params)
        start = path or "i=85"  # the Objects folder
        try:
            start_id = node_id(start)
        except ValueError as exc:
            raise BrowseFailed(str(exc)) from None
        session = self.links.get(conn.key())
        own = session is None
        if session is None:
            session = await self.open_link(conn, object())
        try:
            children = await session.client.get_node(start_id).get_children_descriptions()
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
