"""A Modbus device that answers fewer registers or bits than asked: the sids it left out are warned about, the others
keep their samples, and the connection is kept. Failed on the code before: the short answer raised struct.error
(IndexError for bits) out of the poller, failing every sid on the device and reconnecting it at each poll."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from typing import Any

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_common.control import DemandedSubscription
from tributary_ingest.connectors.modbus import ModbusSource


@contextlib.asynccontextmanager
async def short_device(connections: list[int]) -> AsyncIterator[int]:
    """A Modbus TCP device answering every register read with one register (7) and every bit read with one byte
    (the first bit set), whatever was asked."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                fc = (await reader.readexactly(length - 1))[0]
                body = bytes([fc, 2, 0, 7]) if fc in (3, 4) else bytes([fc, 1, 1])
                writer.write(struct.pack(">HHHB", tid, 0, len(body) + 1, unit) + body)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_registers_and_bits_missing_from_an_answer_are_warned_not_fatal(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    connections: list[int] = []
    async with short_device(connections) as port:

        def item(**kw: Any) -> DemandedSubscription:
            return sub("modbus", {"host": "127.0.0.1", "port": port, "interval_s": 0.1, **kw})

        first = item(address=0)
        missing = item(address=1)
        wide = item(address=0, type="uint32", interval_s=0.2)  # two registers asked, one answered
        coil = item(table="coil", address=0, type="bool")
        far_coil = item(table="coil", address=9, type="bool")  # in the second byte, which never comes
        settings = make_settings(amqp_url, cache_namespace, http_allow=["127.0.0.1"])
        async with engine(settings, {"modbus": ModbusSource}) as e:
            amqp_bus.demand("modbus", [first, missing, wide, coil, far_coil])
            await eventually(lambda: len(amqp_bus.values(first.sid)) >= 10, what="ten samples of address 0")
            await eventually(lambda: len(amqp_bus.values(coil.sid)) >= 10, what="ten samples of coil 0")
            status = e.status()["sources"]["modbus"]
            assert status["failing"] == {}
            assert len(status["leases"]) == 5
            assert len(connections) == 1, "the connection was kept"
            data = e.metrics.registry.get_sample_value(
                "tributary_ingest_errors_total", {"source": "modbus", "kind": "data"}
            )
            assert data is not None and data >= 3
    assert {v for _, v in amqp_bus.values(first.sid)} == {7}
    assert {v for _, v in amqp_bus.values(coil.sid)} == {True}
    for s in (missing, wide, far_coil):
        assert amqp_bus.values(s.sid) == []
