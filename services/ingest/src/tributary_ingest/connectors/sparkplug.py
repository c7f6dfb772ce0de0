"""Sparkplug B payloads (Eclipse Tahu `sparkplug_b.proto`, `org.eclipse.tahu.protobuf.Payload`) decoded with
protobuf; the descriptor is declared here from the public spec, in a pool of its own (no generated code, no clash
with another copy of the same .proto in the process). Only what the mqtt source reads is declared: payload
timestamp, metrics and seq; each metric's name, alias, timestamp, datatype, flags and scalar values. Fields not
declared (metadata, properties, datasets, templates) are skipped by the parser like any unknown field.

Topics: `spBv1.0/<group>/<NBIRTH|NDATA|NDEATH|DBIRTH|DDATA|DDEATH|NCMD|DCMD>/<edge node>[/<device>]`. A BIRTH
names each metric's alias and datatype; later DATA messages may carry only the alias and leave the datatype out,
so `Births` keeps both per edge node/device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from tributary_common.timeutil import format_time

from ..sdk import SampleValue

NAMESPACE = "spBv1.0"
DATA_TYPES = {"NBIRTH", "NDATA", "DBIRTH", "DDATA"}
MAX_ALIASES = 100_000  # per broker connection: a hostile edge node cannot grow the table without bound

_F = descriptor_pb2.FieldDescriptorProto
# (name, number, type) of the declared fields
_METRIC_FIELDS = [
    ("name", 1, _F.TYPE_STRING),
    ("alias", 2, _F.TYPE_UINT64),
    ("timestamp", 3, _F.TYPE_UINT64),
    ("datatype", 4, _F.TYPE_UINT32),
    ("is_historical", 5, _F.TYPE_BOOL),
    ("is_transient", 6, _F.TYPE_BOOL),
    ("is_null", 7, _F.TYPE_BOOL),
    ("int_value", 10, _F.TYPE_UINT32),
    ("long_value", 11, _F.TYPE_UINT64),
    ("float_value", 12, _F.TYPE_FLOAT),
    ("double_value", 13, _F.TYPE_DOUBLE),
    ("boolean_value", 14, _F.TYPE_BOOL),
    ("string_value", 15, _F.TYPE_STRING),
    ("bytes_value", 16, _F.TYPE_BYTES),
]


def _payload_class() -> type[message.Message]:
    proto = descriptor_pb2.FileDescriptorProto(name="tributary/sparkplug_b.proto", package="org.eclipse.tahu.protobuf")
    payload = proto.message_type.add(name="Payload")
    payload.field.add(name="timestamp", number=1, type=_F.TYPE_UINT64, label=_F.LABEL_OPTIONAL)
    payload.field.add(
        name="metrics",
        number=2,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=".org.eclipse.tahu.protobuf.Payload.Metric",
    )
    payload.field.add(name="seq", number=3, type=_F.TYPE_UINT64, label=_F.LABEL_OPTIONAL)
    metric = payload.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    for name, number, kind in _METRIC_FIELDS:
        f = metric.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL)
        if number >= 10:
            f.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    cls: type[message.Message] = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload")
    )
    return cls


Payload = _payload_class()


@dataclass(frozen=True)
class Topic:
    group: str
    kind: str
    node: str
    device: str | None

    @property
    def origin(self) -> tuple[str, str, str | None]:
        return self.group, self.node, self.device


def parse_topic(topic: str) -> Topic | None:
    """The parts of a Sparkplug B topic, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE:
        return None
    return Topic(parts[1], parts[2], parts[3], parts[4] if len(parts) == 5 else None)


@dataclass(frozen=True)
class MetricSample:
    name: str
    t: datetime | None
    value: SampleValue
    problem: str | None = None  # why there is no value (an unknown alias, a type without scalar form)


@dataclass
class Births:
    """Aliases and datatypes announced by BIRTH messages, per (group, edge node, device)."""

    names: dict[tuple[str, str, str | None], dict[int, str]] = field(default_factory=dict)
    types: dict[tuple[str, str, str | None, str], int] = field(default_factory=dict)

    def size(self) -> int:
        return len(self.types) + sum(len(n) for n in self.names.values())

    def decode(self, topic: Topic, raw: bytes) -> list[MetricSample]:
        """The metrics of one payload (`DecodeError` when it is not a Sparkplug B payload)."""
        msg: Any = Payload()
        msg.ParseFromString(raw)
        base = _ms(msg.timestamp) if msg.HasField("timestamp") else None
        origin = topic.origin
        birth = topic.kind.endswith("BIRTH")
        if birth:
            self.names.pop(origin, None)  # a new birth replaces the aliases of the previous one
        aliases = self.names.setdefault(origin, {})
        out = []
        for m in msg.metrics:
            name = m.name if m.HasField("name") else aliases.get(m.alias) if m.HasField("alias") else None
            if name is None:
                out.append(MetricSample(f"alias {m.alias}", None, None, "an alias no BIRTH has named"))
                continue
            if birth and self.size() < MAX_ALIASES:
                if m.HasField("alias"):
                    aliases[m.alias] = name
                if m.HasField("datatype"):
                    self.types[(*origin, name)] = m.datatype
            datatype = m.datatype if m.HasField("datatype") else self.types.get((*origin, name), 0)
            t = _ms(m.timestamp) if m.HasField("timestamp") else base
            try:
                out.append(MetricSample(name, t, None if m.is_null else value_of(m, datatype)))
            except TypeError as exc:
                out.append(MetricSample(name, t, None, str(exc)))
        return out


def _ms(ms: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


_SIGNED_BITS = {1: 8, 2: 16, 3: 32, 4: 64}
DATETIME = 13


def value_of(m: Any, datatype: int) -> SampleValue:
    """A metric's value as a sample value; signed integers are carried as unsigned two's complement."""
    which = m.WhichOneof("value")
    if which is None:
        return None
    if which == "bytes_value":
        raise TypeError("a bytes value has no sample form")
    v = getattr(m, which)
    if which in ("int_value", "long_value"):
        bits = _SIGNED_BITS.get(datatype)
        if bits is not None:
            v &= (1 << bits) - 1
            if v >= 1 << (bits - 1):
                v -= 1 << bits
        elif datatype == DATETIME:
            t = _ms(v)
            if t is None:
                raise TypeError(f"DateTime {v} is out of range")
            return format_time(t)
    return v  # type: ignore[no-any-return]
