"""Sparkplug B decoding (the descriptor declared in tributary_ingest.connectors.sparkplug) against payloads encoded
by pysparkplug, an independent encoder: datatypes, signed integers, aliases from births, hostile payloads."""

from __future__ import annotations

import time

import pysparkplug as spb
import pytest
from google.protobuf.message import DecodeError

from tributary_ingest.connectors import sparkplug

T = int(time.time() * 1000)
DT = spb.DataType


def birth(*metrics: spb.Metric) -> bytes:
    return bytes(spb.NBirth(timestamp=T, seq=0, metrics=metrics).encode(include_dtypes=True))


def test_datatypes_and_signed_integers() -> None:
    metrics = [
        spb.Metric(timestamp=T, name="i8", datatype=DT.INT8, value=-128, alias=1),
        spb.Metric(timestamp=T, name="i32", datatype=DT.INT32, value=-2_000_000_000, alias=2),
        spb.Metric(timestamp=T, name="i64", datatype=DT.INT64, value=-(2**62), alias=3),
        spb.Metric(timestamp=T, name="u32", datatype=DT.UINT32, value=4_000_000_000, alias=4),
        spb.Metric(timestamp=T, name="f", datatype=DT.FLOAT, value=1.5, alias=5),
        spb.Metric(timestamp=T, name="s", datatype=DT.STRING, value="ok", alias=6),
        spb.Metric(timestamp=T + 5, name="null", datatype=DT.DOUBLE, value=None, alias=7, is_null=True),
    ]
    got = {m.name: m for m in sparkplug.Births().decode(sparkplug.Topic("G", "NBIRTH", "E", None), birth(*metrics))}
    assert {k: m.value for k, m in got.items()} == {
        "i8": -128,
        "i32": -2_000_000_000,
        "i64": -(2**62),
        "u32": 4_000_000_000,
        "f": 1.5,
        "s": "ok",
        "null": None,
    }
    assert got["null"].t is not None and got["null"].t.timestamp() * 1000 == pytest.approx(T + 5)


def test_aliases_from_the_birth_and_a_rebirth() -> None:
    births = sparkplug.Births()
    node = sparkplug.parse_topic("spBv1.0/G/NBIRTH/E")
    assert node is not None and sparkplug.parse_topic("plant/a/b") is None
    births.decode(node, birth(spb.Metric(timestamp=T, name="Temp", datatype=DT.INT16, value=1, alias=9)))
    data = spb.NData(
        timestamp=T, seq=1, metrics=[spb.Metric(timestamp=T, name=None, alias=9, datatype=DT.INT16, value=-3)]
    )
    ndata = sparkplug.Topic("G", "NDATA", "E", None)
    assert [(m.name, m.value) for m in births.decode(ndata, bytes(data.encode()))] == [("Temp", -3)]
    # Another device's alias 9 is not this one's.
    other = sparkplug.Topic("G", "DDATA", "E", "D")
    assert births.decode(other, bytes(data.encode()))[0].problem == "an alias no BIRTH has named"
    # A rebirth renames the alias.
    births.decode(node, birth(spb.Metric(timestamp=T, name="Level", datatype=DT.INT16, value=1, alias=9)))
    assert [m.name for m in births.decode(ndata, bytes(data.encode()))] == ["Level"]


def test_hostile_payloads() -> None:
    births = sparkplug.Births()
    topic = sparkplug.Topic("G", "NDATA", "E", None)
    with pytest.raises(DecodeError):
        births.decode(topic, b"\xff\xff\xff not protobuf")
    assert births.decode(topic, b"") == []  # an empty payload has no metrics
    raw = spb.NData(
        timestamp=T, seq=1, metrics=[spb.Metric(timestamp=T, name="blob", datatype=DT.BYTES, value=b"\x00\x01")]
    ).encode(include_dtypes=True)
    (m,) = births.decode(topic, bytes(raw))
    assert m.value is None and m.problem == "a bytes value has no sample form"
    huge = spb.NData(
        timestamp=2**63, seq=1, metrics=[spb.Metric(timestamp=2**63, name="x", datatype=DT.DOUBLE, value=1.0)]
    ).encode(include_dtypes=True)
    (m,) = births.decode(topic, bytes(huge))
    assert m.t is None and m.value == 1.0  # a time out of range: the connector uses the arrival time


def test_the_alias_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparkplug, "MAX_ALIASES", 10)
    births = sparkplug.Births()
    for n in range(20):
        metric = spb.Metric(timestamp=T, name=f"m{n}", datatype=DT.INT32, value=n, alias=n)
        births.decode(sparkplug.Topic("G", "NBIRTH", f"E{n}", None), birth(metric))
    assert births.size() <= 11
