"""`modbus`: Modbus TCP polling with `pymodbus`: holding and input registers, coils and discrete inputs.

One connection per device (host and port) shared by every sid on it. Sids of one unit, table and poll interval are
read together: each poll groups adjacent addresses (gaps of at most `MAX_GAP` registers) into one request of at
most 125 registers or 2000 bits, so ten tags in a row cost one request, not ten. Values are int16/uint16 (one
register), int32/uint32/float32 (two), float64 (four), in the given word order (which register holds the high
word) and byte order (within each register), then `value * scale + offset`. A request the device refuses (an
exception response: an address it does not have) is a data warning on the sids it covers; a connection that
breaks fails every sid on the device, and the framework reconnects them with backoff.

Modbus has no browsing: what a register holds is configuration (the device's manual), and `browse` says so. The
host is checked against `TRIBUTARY_HTTP_ALLOW` on its resolved address and connected to at that address.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymodbus.client import AsyncModbusTcpClient

from tributary_common.egress import EgressPolicy
from tributary_common.tasks import cancel_and_wait
from tributary_common.timeutil import utcnow

from ..sdk import Connector, Listing, SampleValue, Sink
from ..settings import IngestSettings
from .links import LinkedConnector
from .pinned import host_field, pinned_address

log = logging.getLogger(__name__)
MAX_GAP = 8  # registers (or bits) read in between two wanted ones rather than a second request
MAX_REGISTERS = 125
MAX_BITS = 2000
WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4, "bool": 1}
FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}
Table = Literal["holding", "input", "coil", "discrete"]
NOTE = (
    "Modbus cannot be browsed: a device does not say which registers it has or what they hold. Read the device's "
    "register map and give table, address, type, word_order, byte_order, scale and offset per item."
)


class ModbusDevice(BaseModel):
    # No NaN or infinite scale/offset (a demand's JSON may carry them): every value would be a refused non-finite one.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    host: str = host_field("modbus", "Modbus TCP device or gateway")
    port: int = Field(default=502, ge=1, le=65535)
    unit: int = Field(default=1, ge=0, le=255, description="Unit (slave) id")
    timeout_s: float = Field(default=3.0, gt=0, le=60)


class ModbusParams(ModbusDevice):
    table: Table = Field(default="holding", description="holding, input (registers), coil, discrete (bits)")
    address: int = Field(ge=0, le=65535, description="0-based address of the first register or bit")
    type: Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool"] = "uint16"
    word_order: Literal["big", "little"] = Field(default="big", description="big: the first register is high")
    byte_order: Literal["big", "little"] = Field(default="big", description="within each register")
    scale: float = 1.0
    offset: float = 0.0
    interval_s: float = Field(default=1.0, ge=0.05, le=86400, description="Seconds between polls")

    @model_validator(mode="after")
    def _fits(self) -> ModbusParams:
        bits = self.table in ("coil", "discrete")
        if bits != (self.type == "bool"):
            raise ValueError(f"table {self.table} holds {'bits: type bool' if bits else 'registers: not bool'}")
        if self.address + WORDS[self.type] > 65536:
            raise ValueError(f"a {self.type} at {self.address} runs past address 65535")
        return self

    def group(self) -> tuple[int, str, float]:
        return (self.unit, self.table, self.interval_s)


def decode(words: list[int], p: ModbusParams) -> SampleValue:
    """The value of `p` from its registers (already in request order)."""
    if p.word_order == "little":
        words = words[::-1]
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if p.byte_order == "little":
        raw = b"".join(raw[i : i + 2][::-1] for i in range(0, len(raw), 2))
    value: int | float = struct.unpack(">" + FORMATS[p.type], raw)[0]
    if p.scale != 1.0 or p.offset != 0.0:
        return value * p.scale + p.offset
    return value


def ranges(members: list[ModbusParams], bits: bool) -> list[tuple[int, int, list[ModbusParams]]]:
    """(start, count, members) per request: adjacent addresses together, gaps up to MAX_GAP, within the limit."""
    limit = MAX_BITS if bits else MAX_REGISTERS
    out: list[tuple[int, int, list[ModbusParams]]] = []
    for p in sorted(members, key=lambda m: m.address):
        end = p.address + WORDS[p.type]
        if out:
            start, count, group = out[-1]
            if p.address - (start + count) <= MAX_GAP and max(end, start + count) - start <= limit:
                out[-1] = (start, max(end, start + count) - start, [*group, p])
                continue
        out.append((p.address, end - p.address, [p]))
    return out


@dataclass
class _Device:
    """One connection (a link) and its pollers, one per unit, table and interval."""

    client: AsyncModbusTcpClient
    sink: Sink
    on_lost: Any
    members: dict[tuple[int, str, float], dict[str, ModbusParams]] = field(default_factory=dict)
    pollers: dict[tuple[int, str, float], asyncio.Task[None]] = field(default_factory=dict)
    requests: int = 0

    def add(self, sid: str, p: ModbusParams) -> None:
        group = p.group()
        self.members.setdefault(group, {})[sid] = p
        if group not in self.pollers:
            self.pollers[group] = asyncio.create_task(self._poll(group), name=f"modbus:{group}")

    async def remove(self, sid: str) -> None:
        for group, members in list(self.members.items()):
            if members.pop(sid, None) is not None and not members:
                del self.members[group]
                await cancel_and_wait(self.pollers.pop(group, None))

    async def _poll(self, group: tuple[int, str, float]) -> None:
        unit, table, interval = group
        loop = asyncio.get_running_loop()
        try:
            while group in self.members:
                started = loop.time()
                for start, count, batch in ranges(list(self.members[group].values()), table in ("coil", "discrete")):
                    await self._read(unit, table, start, count, batch)
                await asyncio.sleep(max(0.0, interval - (loop.time() - started)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the connection broke: every sid on the device fails
            self.on_lost(self, exc)

    async def _read(self, unit: int, table: str, start: int, count: int, batch: list[ModbusParams]) -> None:
        self.requests += 1
        call = {
            "holding": self.client.read_holding_registers,
            "input": self.client.read_input_registers,
            "coil": self.client.read_coils,
            "discrete": self.client.read_discrete_inputs,
        }[table]
        response = await call(start, count=count, device_id=unit)
        t = utcnow()
        # Members may have left while the request was out: only those still here get a sample.
        sids = {id(p): sid for sid, p in self.members.get((unit, table, batch[0].interval_s), {}).items()}
        if response.isError():
            for p in batch:
                if (sid := sids.get(id(p))) is not None:
                    self.sink.warn(sid, f"{table} {start}..{start + count - 1} of unit {unit}: {response}")
            return
        for p in batch:
            sid = sids.get(id(p))
            if sid is None:
                continue
            i = p.address - start
            # A device may answer fewer registers or bits than asked (pymodbus takes the frame's byte count): the
            # IndexError or struct.error failed every sid on the device and reconnected it, again at each poll.
            if table in ("coil", "discrete"):
                if i >= len(response.bits):
                    self.sink.warn(sid, f"{table} {p.address} of unit {unit}: missing from the device's answer")
                    continue
                self.sink.emit(sid, t, bool(response.bits[i]))
            else:
                words = list(response.registers[i : i + WORDS[p.type]])
                if len(words) != WORDS[p.type]:
                    self.sink.warn(sid, f"{table} {p.address} of unit {unit}: missing from the device's answer")
                    continue
                self.sink.emit(sid, t, decode(words, p))

    async def close(self) -> None:
        for task in self.pollers.values():
            task.cancel()
        await asyncio.gather(*self.pollers.values(), return_exceptions=True)
        self.client.close()


class ModbusSource(LinkedConnector[ModbusParams, _Device]):
    params_model = ModbusParams
    browse_model = ModbusDevice
    capacity = 5000
    # Unconfigured (outside an engine): public addresses only.
    policy: ClassVar[EgressPolicy] = EgressPolicy()
    leave_timeout_s = None  # leaving only stops a poller

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]]:
        return cast(type[Connector[Any]], type(cls.__name__, (cls,), {"policy": settings.egress_policy()}))

    def link_key(self, params: ModbusParams) -> Hashable:
        return (params.host, params.port, params.timeout_s)

    async def open_link(self, p: ModbusParams, key: Hashable) -> _Device:
        address = await pinned_address(self.policy, p.host, "modbus", p.port, timeout_s=p.timeout_s)
        client = AsyncModbusTcpClient(address, port=p.port, timeout=p.timeout_s, retries=0, reconnect_delay=0)
        if not await client.connect():
            client.close()
            raise ConnectionError(f"Modbus device {p.host}:{p.port} does not answer")
        return _Device(client, self.sink, lambda device, exc: self.links.lost(key, device, exc))

    async def join(self, link: _Device, sid: str, params: ModbusParams) -> None:
        link.add(sid, params)

    async def leave(self, link: _Device, sid: str) -> None:
        await link.remove(sid)

    async def browse(self, path: str, params: Any, limit: int) -> Listing:
        return Listing(items=[], note=NOTE)
