"""`http`: poll a JSON endpoint, pick one field by JSON pointer; conditional requests where the server has them.

The ETag (If-None-Match) or Last-Modified (If-Modified-Since) of the last answer is sent back; a `304 Not
Modified` yields no sample. Without `time_pointer` a sample is stamped with the time of the answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from tributary_common.timeutil import utcnow

from ..sdk import Connector, Secret
from ..values import PointerError, as_sample_value, parse_timestamp, resolve_pointer, validate_pointer

MAX_BODY_BYTES = 8 * 1024 * 1024


class HttpStatusError(RuntimeError):
    pass


class HttpParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="The JSON endpoint (http or https)")
    pointer: str = Field(description="RFC 6901 JSON pointer of the value, e.g. /data/temperature")
    time_pointer: str | None = Field(default=None, description="JSON pointer of the sample's time (else: now)")
    interval_s: float = Field(default=5.0, ge=0.05, le=86400, description="Seconds between polls")
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    headers: dict[str, Secret] = Field(
        default_factory=dict,
        description='Extra request headers; each value a secret reference {"secret": "NAME"} (they carry credentials)',
    )

    @field_validator("pointer", "time_pointer")
    @classmethod
    def _pointer(cls, v: str | None) -> str | None:
        return None if v is None else validate_pointer(v)


class HttpSource(Connector[HttpParams]):
    params_model = HttpParams
    capacity = 500

    async def read(self, sid: str, params: HttpParams) -> None:
        url = str(params.url)
        validators: dict[str, str] = {}
        async with httpx.AsyncClient(timeout=params.timeout_s, follow_redirects=True) as client:
            while True:
                response = await client.get(url, headers={**params.headers, **validators})
                if response.status_code == 304:
                    pass
                elif response.status_code >= 400:
                    raise HttpStatusError(f"GET {url} answered {response.status_code} {response.reason_phrase}")
                else:
                    validators = _validators(response)
                    self._sample(sid, params, response)
                await asyncio.sleep(params.interval_s)

    def _sample(self, sid: str, params: HttpParams, response: httpx.Response) -> None:
        if len(response.content) > MAX_BODY_BYTES:
            self.sink.warn(sid, f"answer of {len(response.content)} bytes is over {MAX_BODY_BYTES}")
            return
        try:
            doc: Any = response.json()
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
    return out
