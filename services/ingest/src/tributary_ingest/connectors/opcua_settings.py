"""`opcua` params: where and how to connect (`OpcuaConnection`, what browsing takes) and the monitored item."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

from asyncua import ua
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tributary_common.egress import SCHEMA_MARK

from ..sdk import Secret

ENDPOINT_PATTERN = r"^opc\.tcp://[^\s/?#@]+(/[^\s?#]*)?$"
MAX_PEM = 16384


class OpcuaConnection(BaseModel):
    """Where and how to connect: what browsing needs, and the first part of a subscription's params."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    deadband: float = Field(
        default=0.0, ge=0, le=1e300, description="0: every change; else its size (percent: of the range, ≤ 100)"
    )
    deadband_type: Literal["absolute", "percent"] = Field(default="absolute")

    @model_validator(mode="after")
    def _percent(self) -> OpcuaParams:
        if self.deadband_type == "percent" and self.deadband > 100:
            raise ValueError("a percent deadband is at most 100")
        return self

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        node_id(v)
        return v


def node_id(text: str) -> ua.NodeId:
    try:
        return ua.NodeId.from_string(text)
    except Exception as exc:  # noqa: BLE001 - asyncua raises several kinds for a bad string
        raise ValueError(f"{text!r} is not a NodeId ({exc})") from None
