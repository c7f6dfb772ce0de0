"""`mqtt` params: which broker and how (`MqttConnection`, what browsing takes) and what to read there (`MqttParams`).

TLS: a CA (PEM in the params, or a file under the operator's `TRIBUTARY_MQTT_TLS_DIR`; else the system's CAs), an
optional client certificate (PEM or file) whose private key is a secret, and `server_name` (default `host`). User
name and password (a secret) with or without TLS.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..sdk import Secret
from ..values import validate_pointer
from .pinned import host_field

MAX_PEM = 16384
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

    host: str = host_field("mqtt", "MQTT broker host")
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
