"""`mqtt`: subscribe to a topic filter on an MQTT broker; JSON payloads (a field by pointer) or plain numbers.

One connection per subscription. A lost connection raises, so the framework reconnects with jittered backoff.
The broker host is resolved once, checked against the egress policy (`TRIBUTARY_HTTP_ALLOW`) and connected to at
the checked address; a refused host fails the read (`Refused`: counted, backoff).
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, cast

import aiomqtt
import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tributary_common.egress import SCHEMA_MARK, SCHEME_MARK, EgressPolicy, EgressRefused, Target
from tributary_common.resolve import resolve
from tributary_common.timeutil import utcnow

from ..sdk import Connector, Refused, SampleValue, Secret
from ..settings import IngestSettings
from ..values import PointerError, as_sample_value, parse_text_value, parse_timestamp, resolve_pointer, validate_pointer


class MqttParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        min_length=1,
        max_length=253,
        description="MQTT broker host",
        json_schema_extra={SCHEMA_MARK: "host", SCHEME_MARK: "mqtt"},
    )
    port: int = Field(default=1883, ge=1, le=65535)
    topic: str = Field(min_length=1, max_length=1024, description="Topic filter (`+` and `#` allowed)")
    qos: int = Field(default=0, ge=0, le=2)
    payload: str = Field(default="json", pattern="^(json|plain)$", description="`json` or `plain` (a number/text)")
    pointer: str = Field(default="", description="JSON pointer of the value in a JSON payload ('' = whole payload)")
    time_pointer: str | None = Field(default=None, description="JSON pointer of the time (else: arrival time)")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    username: str | None = Field(default=None, min_length=1, max_length=256, description="MQTT user name")
    password: Secret | None = Field(default=None, description='MQTT password: a secret reference {"secret": "NAME"}')

    @field_validator("pointer", "time_pointer")
    @classmethod
    def _pointer(cls, v: str | None) -> str | None:
        return None if v is None else validate_pointer(v)

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        levels = v.split("/")
        for i, level in enumerate(levels):
            if "#" in level and (level != "#" or i != len(levels) - 1):
                raise ValueError(f"topic {v!r}: '#' must be a whole level and the last one")
            if "+" in level and level != "+":
                raise ValueError(f"topic {v!r}: '+' must be a whole level")
        return v


class MqttSource(Connector[MqttParams]):
    params_model = MqttParams
    capacity = 1000
    # Unconfigured (outside an engine): public addresses only.
    policy: ClassVar[EgressPolicy] = EgressPolicy()

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]]:
        return cast(type[Connector[Any]], type(cls.__name__, (cls,), {"policy": settings.egress_policy()}))

    async def read(self, sid: str, params: MqttParams) -> None:
        try:
            addresses = await resolve(params.host, params.port, timeout_s=10.0)
            self.policy.check(Target(params.host, "mqtt", params.port), addresses)
        except EgressRefused as exc:
            raise Refused(str(exc)) from None
        client = aiomqtt.Client(
            str(addresses[0]),  # the checked address: no second resolution between check and connect
            params.port,
            identifier=f"tributary-{sid[:10]}-{uuid.uuid4().hex[:8]}",
            keepalive=params.keepalive_s,
            username=params.username,
            password=params.password,
        )
        async with client:
            await client.subscribe(params.topic, qos=params.qos)
            async for message in client.messages:
                self._sample(sid, params, message.payload)

    def _sample(self, sid: str, params: MqttParams, payload: Any) -> None:
        raw = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
        t = utcnow()
        value: SampleValue
        try:
            if params.payload == "plain":
                value = parse_text_value(raw.decode("utf-8"))
            else:
                doc = orjson.loads(raw)
                value = as_sample_value(resolve_pointer(doc, params.pointer), f"value at {params.pointer!r}")
                if params.time_pointer is not None:
                    t = parse_timestamp(resolve_pointer(doc, params.time_pointer))
        except (PointerError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
            self.sink.warn(sid, f"payload skipped: {exc}")
            return
        self.sink.emit(sid, t, value)
