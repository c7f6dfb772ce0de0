"""The hub's HTTP API: topics, publishing, history and exports, unitops, sources."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import httpx
import orjson

from tributary_common.events import CloudEvent
from tributary_common.timeutil import format_time

from .errors import TributaryError

EXPORT_TYPES = {"csv": "text/csv", "jsonl": "application/jsonl", "ndjson": "application/x-ndjson"}


def _time(value: datetime | str | None) -> str | None:
    return format_time(value) if isinstance(value, datetime) else value


class HubClient:
    """`async with HubClient(url, token) as hub: await hub.publish("orders", {...})`."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        timeout: float = 30,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise TributaryError.from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # Topics
    async def create_topic(
        self,
        name: str,
        schema: dict[str, Any],
        *,
        compatibility: str | None = None,
        retention_days: float | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "schema": schema}
        for key, value in (
            ("compatibility", compatibility),
            ("retention_days", retention_days),
            ("description", description),
        ):
            if value is not None:
                body[key] = value
        result: dict[str, Any] = await self._request("POST", "/topics", json=body)
        return result

    async def list_topics(self, page_size: int = 1000) -> list[dict[str, Any]]:
        """Every topic the credential's ACL touches, by name, following the pages."""
        topics: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": page_size}
        while True:
            page = await self._request("GET", "/topics", params=params)
            topics += page["items"]
            if not page.get("next"):
                return topics
            params["cursor"] = page["next"]

    async def get_topic(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/topics/{name}")
        return result

    async def update_schema(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("PUT", f"/topics/{name}/schema", json={"schema": schema})
        return result

    async def get_schema(self, name: str, version: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/topics/{name}/schemas/{version}")
        return result

    async def delete_topic(self, name: str, *, force: bool = False) -> None:
        await self._request("DELETE", f"/topics/{name}", params={"force": "true"} if force else None)

    # Events
    async def publish(
        self, topic: str, data: Any, *, subject: str | None = None, id: str | None = None, source: str | None = None
    ) -> dict[str, Any]:
        body = {
            k: v for k, v in {"data": data, "subject": subject, "id": id, "source": source}.items() if v is not None
        }
        if data is None:
            body["data"] = None
        result: dict[str, Any] = await self._request("POST", f"/topics/{topic}/events", json=body)
        return result

    async def publish_batch(self, topic: str, events: Iterable[dict[str, Any]]) -> list[str]:
        """Each event is `{"data", "subject"?, "id"?, "source"?}`; the ids come back in order."""
        body = b"\n".join(orjson.dumps(e) for e in events) + b"\n"
        result = await self._request(
            "POST", f"/topics/{topic}/events:batch", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        return list(result["ids"])

    async def history(
        self,
        topic: str,
        *,
        subject: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[CloudEvent]:
        """Every matching event, oldest first, following the cursor page by page."""
        params: dict[str, Any] = {"limit": page_size}
        for key, value in (("subject", subject), ("start", _time(start)), ("end", _time(end))):
            if value is not None:
                params[key] = value
        while True:
            page = await self._request("GET", f"/topics/{topic}/events", params=params)
            for item in page["items"]:
                yield CloudEvent.model_validate(item)
            if not page.get("next"):
                return
            params["cursor"] = page["next"]

    async def export(
        self,
        topic: str,
        fmt: str = "jsonl",
        *,
        subject: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
    ) -> AsyncIterator[bytes]:
        """The streamed export (`csv`, `jsonl` or `ndjson`), chunk by chunk."""
        params = {
            k: v for k, v in (("subject", subject), ("start", _time(start)), ("end", _time(end))) if v is not None
        }
        async for chunk in self._stream(f"/topics/{topic}/events", params, fmt):
            yield chunk

    async def _stream(self, path: str, params: dict[str, Any], fmt: str) -> AsyncIterator[bytes]:
        """A streamed answer in `fmt` (`csv`, `jsonl` or `ndjson`), chunk by chunk."""
        headers = {"Accept": EXPORT_TYPES[fmt]}
        async with self._http.stream("GET", path, params=params, headers=headers) as response:
            if response.status_code >= 400:
                await response.aread()
                raise TributaryError.from_response(response)
            async for chunk in response.aiter_bytes():
                yield chunk

    async def latest(self, topic: str) -> list[dict[str, Any]]:
        result = await self._request("GET", f"/topics/{topic}/events:latest")
        return list(result["items"] if isinstance(result, dict) else result)

    # Unitops and sources
    async def create_unitop(self, unitop: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("POST", "/unitops", json=unitop)
        return result

    async def get_unitop(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/unitops/{name}")
        return result

    async def list_unitops(self, prefix: str | None = None) -> list[dict[str, Any]]:
        result = await self._request("GET", "/unitops", params={"prefix": prefix} if prefix else None)
        return list(result["items"] if isinstance(result, dict) else result)

    async def delete_unitop(self, name: str) -> None:
        await self._request("DELETE", f"/unitops/{name}")

    async def sources(self) -> list[dict[str, Any]]:
        result = await self._request("GET", "/sources")
        return list(result["items"] if isinstance(result, dict) else result)

    async def browse(
        self, source: str, path: str = "", params: dict[str, Any] | None = None, limit: int = 200
    ) -> dict[str, Any]:
        """What `source` can subscribe under `path` (`{items: [{name, path, kind, has_children, params}], note}`);
        `params` are the connection params (endpoint, broker, folder), credentials as `{"secret": "NAME"}`."""
        query = {"path": path, "params": orjson.dumps(params or {}).decode(), "limit": str(limit)}
        result: dict[str, Any] = await self._request("GET", f"/sources/{source}/browse", params=query)
        return result

    # Historian reads of a unitop's items (see `samples_params` for the parameters)
    async def samples_current(self, unitop: str, items: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The latest sample of each item: `{item, sid, t, v, q}` (`q` `no_data` for an item without one)."""
        result = await self._request("GET", f"/unitops/{unitop}/samples:current", params=samples_params(items=items))
        return list(result["items"])

    async def samples(self, unitop: str, read: str = "raw", **params: Any) -> AsyncIterator[dict[str, Any]]:
        """The rows of `read` (`raw`, `interpolated`, `plot` or `summary`), streamed as NDJSON so that a long
        read is never held whole."""
        buf = b""
        async for chunk in self.samples_export(unitop, read, "ndjson", **params):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line:
                    yield orjson.loads(line)
        if buf.strip():
            yield orjson.loads(buf)

    def samples_export(self, unitop: str, read: str = "raw", fmt: str = "csv", **params: Any) -> AsyncIterator[bytes]:
        """`read` streamed as `fmt` (`csv`, `jsonl` or `ndjson`); interpolated CSV is the wide table."""
        path = f"/unitops/{unitop}/samples" + ("" if read == "raw" else f":{read}")
        return self._stream(path, samples_params(**params), fmt)

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/readyz")
        return result


def samples_params(**params: Any) -> dict[str, Any]:
    """Query parameters of the sample reads: `items`, `times` (lists or comma-separated), `start`, `end`
    (datetimes or RFC 3339), `interval` (`"15m"`, seconds), `intervals`, `calc`, `last`, `boundary`."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if key in ("items", "times", "calc") and not isinstance(value, str):
            value = ",".join(_time(v) or "" for v in value)
        out[key] = _time(value) if isinstance(value, datetime) else value
    return out
