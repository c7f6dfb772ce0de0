"""The modbus source against pymodbus's own TCP server: registers, coils, data types, word and byte order, scale
and offset, adjacent addresses grouped into one request (counted on the server), refusals and bad addresses."""

from __future__ import annotations

import contextlib
import functools
import struct
from collections.abc import AsyncIterator
from typing import Any

from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.ingest.helpers import engine, make_settings, sub
from tests.support import platform
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_ingest.connectors.modbus import NOTE, ModbusSource


def words(fmt: str, value: float, *, word_order: str = "big", byte_order: str = "big") -> list[int]:
    raw = struct.pack(">" + fmt, value)
    if byte_order == "little":
        raw = b"".join(raw[i : i + 2][::-1] for i in range(0, len(raw), 2))
    out = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return out[::-1] if word_order == "little" else out


HOLDING = [
    *words("h", -1234),  # 0
    *words("H", 54321),  # 1
    *words("i", -100000),  # 2-3
    *words("I", 3_000_000_000, word_order="little"),  # 4-5
    *words("f", 3.5),  # 6-7
    *words("d", -2.25, byte_order="little"),  # 8-11
    250,  # 12: scaled
]


@contextlib.asynccontextmanager
async def device(port: int, requests: list[tuple[int, int, int]]) -> AsyncIterator[ModbusTcpServer]:
    holding = [*HOLDING, *([0] * (200 - len(HOLDING))), 4242]  # 0..199, and 200 is far off
    simdata = (
        [SimData(0, values=[False, False, False, True, False, False, False, False], datatype=DataType.BITS)],
        [SimData(0, values=[False] * 8, datatype=DataType.BITS)],
        [SimData(0, values=holding, datatype=DataType.REGISTERS)],
        [SimData(0, values=[777, 0], datatype=DataType.REGISTERS)],
    )

    def trace(sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            requests.append((pdu.function_code, pdu.address, pdu.count))
        return pdu

    server = ModbusTcpServer(SimDevice(1, simdata=simdata), address=("127.0.0.1", port), trace_pdu=trace)
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]


def item(port: int, **kw: Any) -> Any:
    return sub("modbus", {"host": "127.0.0.1", "port": port, "interval_s": 0.2, **kw})


async def test_types_orders_scaling_and_grouped_reads(amqp_url: str, cache_namespace: str, amqp_bus: Bus) -> None:
    port = platform.free_port()
    requests: list[tuple[int, int, int]] = []
    items = {
        "int16": (item(port, address=0, type="int16"), -1234),
        "uint16": (item(port, address=1, type="uint16"), 54321),
        "int32": (item(port, address=2, type="int32"), -100000),
        "uint32": (item(port, address=4, type="uint32", word_order="little"), 3_000_000_000),
        "float32": (item(port, address=6, type="float32"), 3.5),
        "float64": (item(port, address=8, type="float64", byte_order="little"), -2.25),
        "scaled": (item(port, address=12, scale=0.1, offset=-5), 20.0),
        "far": (item(port, address=200), 4242),
        "input": (item(port, table="input", address=0), 777),
        "coil3": (item(port, table="coil", address=3, type="bool"), True),
        "coil5": (item(port, table="coil", address=5, type="bool"), False),
        "missing": (item(port, address=5000), None),
    }
    settings = make_settings(amqp_url, cache_namespace, http_allow=["127.0.0.1"])
    async with device(port, requests), engine(settings, {"modbus": ModbusSource}) as e:
        amqp_bus.demand("modbus", [s for s, _ in items.values()])
        for name, (s, expected) in items.items():
            if expected is not None:
                got = await eventually(functools.partial(amqp_bus.values, s.sid), what=f"{name} values")
                assert got[-1][1] == expected, (name, got[-1])
                assert type(got[-1][1]) is type(expected), name
        await eventually(lambda: len(requests) >= 20, what="polls")
        assert len(e.runtimes["modbus"].connector.links) == 1  # type: ignore[attr-defined]  # one connection
        status = e.status()["sources"]["modbus"]
        assert status["failing"] == {}  # an address the device lacks is a data warning, not a failure
    # One request for addresses 0..12, one for 200, one for the input register, one for coils 3..5: every poll.
    assert {r for r in requests} == {(3, 0, 13), (3, 200, 1), (4, 0, 1), (1, 3, 3), (3, 5000, 1)}
    assert amqp_bus.values(items["missing"][0].sid) == []
    errors = e.metrics.registry.get_sample_value("tributary_ingest_errors_total", {"source": "modbus", "kind": "data"})
    assert errors is not None and errors >= 1


async def test_refused_host_and_browse_note(amqp_url: str, cache_namespace: str, amqp_bus: Bus) -> None:
    metadata = sub("modbus", {"host": "169.254.169.254", "address": 0})
    settings = make_settings(amqp_url, cache_namespace, backoff_min_s=0.2, backoff_max_s=0.5)
    async with engine(settings, {"modbus": ModbusSource}) as e:
        amqp_bus.demand("modbus", [metadata])
        failing = await eventually(
            lambda: e.status()["sources"]["modbus"]["failing"].get(metadata.sid), what="a refusal"
        )
        assert "Refused" in failing and "link-local" in failing
        listing = await e.runtimes["modbus"].connector.browse("", None, 10)
        assert listing.items == [] and listing.note == NOTE
