"""`http`: poll a JSON endpoint, pick one field by JSON pointer; conditional requests where the server has them.

The ETag (If-None-Match) or Last-Modified (If-Modified-Since) of the last answer is sent back; a `304 Not
Modified` yields no sample. Without `time_pointer` a sample is stamped with the time of the answer.

Reaches only what the operator allows (`TRIBUTARY_HTTP_ALLOW`, checked on every connection and redirect hop by
`CheckedTransport`); an answer over `TRIBUTARY_HTTP_MAX_BODY_BYTES` is refused while it streams in, and polls are
no more frequent than `TRIBUTARY_HTTP_MIN_INTERVAL_S`. Refusals fail the read (`Refused`: counted, backoff).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import httpx
import orjson
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, create_model, field_validator

from tributary_common.egress import SCHEMA_MARK, EgressPolicy, EgressRefused
from tributary_common.timeutil import utcnow

from ..sdk import Connector, Headers, Refused
from ..settings import IngestSettings
from ..values import PointerError, as_sample_value, parse_timestamp, resolve_pointer, validate_pointer
from .checked_http import CheckedTransport

MAX_REDIRECTS = 5
MAX_HEADERS = 32
MAX_VALIDATOR = 1024  # the longest ETag or Last-Modified sent back
# Headers the connector owns: routing (Host), framing, and the encoding it can cap (identity only).
_RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "accept-encoding"}
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")


class HttpStatusError(RuntimeError):
    pass


@dataclass(frozen=True)
class HttpLimits:
    """What the operator allows: where (`TRIBUTARY_HTTP_ALLOW`), how much per answer, how often."""

    policy: EgressPolicy = field(default_factory=EgressPolicy)
    max_body_bytes: int = 8 * 1024 * 1024
    min_interval_s: float = 0.05


class HttpParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="The JSON endpoint (http or https)", json_schema_extra={SCHEMA_MARK: "url"})
    pointer: str = Field(description="RFC 6901 JSON pointer of the value, e.g. /data/temperature")
    time_pointer: str | None = Field(default=None, description="JSON pointer of the sample's time (else: now)")
    interval_s: float = Field(default=5.0, ge=0.05, le=86400, description="Seconds between polls")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="Seconds for a whole answer, redirects included")
    headers: Headers = Field(
        default={},  # in the schema (not a factory): `{}` written out is the same subscription as none
        description='Extra request headers: literal values, but {"secret": "NAME"} references for credentials '
        "(Authorization, Proxy-Authorization, Cookie, names containing key/token/secret/auth/password/session)",
        json_schema_extra={"maxProperties": MAX_HEADERS},
    )

    @field_validator("pointer", "time_pointer")
    @classmethod
    def _pointer(cls, v: str | None) -> str | None:
        return None if v is None else validate_pointer(v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_HEADERS:
            raise ValueError(f"at most {MAX_HEADERS} headers")
        for name, value in v.items():
            if not _TOKEN_RE.match(name):
                raise ValueError(f"header name {name[:40]!r} is not a token of 1-128 characters")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the connector")
            if len(value) > 8192 or any(c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: at most 8192 characters, no line breaks")
        return v


class HttpSource(Connector[HttpParams]):
    params_model = HttpParams
    capacity = 500
    # Unconfigured (outside an engine): public addresses only, the default cap.
    limits: ClassVar[HttpLimits] = HttpLimits()

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]]:
        floor = settings.http_min_interval_s
        model = create_model(
            cls.params_model.__name__,
            __base__=cls.params_model,
            interval_s=(
                float,
                Field(default=max(5.0, floor), ge=floor, le=86400, description="Seconds between polls"),
            ),
        )
        limits = HttpLimits(settings.egress_policy(), settings.http_max_body_bytes, floor)
        return cast(type[Connector[Any]], type(cls.__name__, (cls,), {"params_model": model, "limits": limits}))

    async def read(self, sid: str, params: HttpParams) -> None:
        if params.interval_s < self.limits.min_interval_s:
            raise Refused(f"interval_s {params.interval_s} is under the floor of {self.limits.min_interval_s} s")
        url = str(params.url)
        validators: dict[str, str] = {}
        transport = CheckedTransport(self.limits.policy, resolve_timeout_s=params.timeout_s)
        async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client:
            while True:
                try:
                    async with asyncio.timeout(params.timeout_s):  # the whole answer, not each read
                        answer = await self._poll(client, url, {**params.headers, **validators}, params.timeout_s)
                except EgressRefused as exc:
                    raise Refused(str(exc)) from None
                if answer is not None:
                    validators, body = answer
                    self._sample(sid, params, body)
                await asyncio.sleep(params.interval_s)

    async def _poll(
        self, client: httpx.AsyncClient, url: str, headers: dict[str, str], timeout_s: float
    ) -> tuple[dict[str, str], bytes] | None:
        """(validators, body) of a 200, None for a 304. Redirects are followed here, each hop checked by the
        transport, and their bodies never read."""
        request = client.build_request(
            "GET", url, headers={**headers, "Accept-Encoding": "identity"}, timeout=timeout_s
        )
        for _ in range(MAX_REDIRECTS + 1):
            response = await client.send(request, stream=True)
            try:
                if response.next_request is not None:  # httpx drops credentials on a cross-origin hop
                    request = response.next_request
                    continue
                if response.status_code == 304:
                    return None
                if response.status_code >= 400:
                    raise HttpStatusError(f"GET {request.url} answered {response.status_code} {response.reason_phrase}")
                return _validators(response), await self._body(response)
            finally:
                await response.aclose()
        raise HttpStatusError(f"GET {url}: more than {MAX_REDIRECTS} redirects")

    async def _body(self, response: httpx.Response) -> bytes:
        cap = self.limits.max_body_bytes
        over = f"is over the limit of {cap} bytes (TRIBUTARY_HTTP_MAX_BODY_BYTES)"
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise Refused(f"answer is {encoding}-encoded; only identity is accepted (its size could not be capped)")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > cap:
            raise Refused(f"answer of {length} bytes {over}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > cap:
                raise Refused(f"answer {over}")
            chunks.append(chunk)
        return b"".join(chunks)

    def _sample(self, sid: str, params: HttpParams, body: bytes) -> None:
        try:
            doc: Any = orjson.loads(body)
        except ValueError as exc:
            self.sink.warn(sid, f"answer is not JSON: {exc}")
            return
        try:
            value = as_sample_value(resolve_pointer(doc, params.pointer), f"value at {params.pointer!r}")
            t = utcnow()
            if params.time_pointer is not None:
                t = parse_timestamp(resolve_pointer(doc, params.time_pointer))
        except (PointerError, ValueError) as exc:
            self.sink.warn(sid, str(exc))
            return
        self.sink.emit(sid, t, value)


def _validators(response: httpx.Response) -> dict[str, str]:
    out = {}
    if etag := response.headers.get("etag"):
        out["If-None-Match"] = etag
    if modified := response.headers.get("last-modified"):
        out["If-Modified-Since"] = modified
    # Echoed only when they can be sent back: a server's non-ASCII ETag made the next request raise
    # UnicodeEncodeError, failing the read at every second poll. Without a validator the poll is unconditional.
    return {k: v for k, v in out.items() if v.isascii() and v.isprintable() and len(v) <= MAX_VALIDATOR}
