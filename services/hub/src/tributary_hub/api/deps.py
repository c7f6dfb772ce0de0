"""Shared pieces of the HTTP layer: authentication per route scope, bounded body reading, JSON parsing,
content negotiation and query-time parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from fastapi import Query, Request, Security
from fastapi.responses import Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError

from tributary_common.auth import Principal
from tributary_common.timeutil import parse_time

from .. import cursors
from ..composition import Hub
from ..errors import HubError, Invalid, NotAcceptable, TooLarge, UnsupportedMedia, validation_details
from ..exports import MEDIA_TYPES

M = TypeVar("M", bound=BaseModel)

bearer = HTTPBearer(
    auto_error=False,
    description="A JWT (HS256 with TRIBUTARY_JWT_SECRET in development; `scope` claim space-separated) or an API key",
)


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


async def authenticated(request: Request, scope: str | None, token: str | None) -> Principal:
    """The caller (401 without valid credentials) holding `scope` (403 without); None: any valid caller."""
    principal = await hub_of(request).auth.authenticate(token)
    request.state.principal = principal.subject  # for the access log
    if scope is not None:
        principal.require(scope)
    return principal


def bearer_credentials(request: Request) -> str | None:
    """The bearer token exactly as `bearer` (HTTPBearer, auto_error=False) reads it, for routes that
    authenticate without a dependency."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme and token and scheme.lower() == "bearer" else None


def require(scope: str | None) -> Callable[..., Awaitable[Principal]]:
    """A dependency authenticating the caller (401) and checking `scope` (403); None: any valid caller."""

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)
    ) -> Principal:
        return await authenticated(request, scope, credentials.credentials if credentials else None)

    dependency.__name__ = f"require_{(scope or 'any').replace(':', '_')}"
    return dependency


DirectHandler = Callable[[Request], Coroutine[Any, Any, Response]]


def direct(handler: DirectHandler) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Marks a documented endpoint as served by `handler` (see `DirectRoute`)."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        endpoint.direct_handler = handler  # type: ignore[attr-defined]
        return endpoint

    return mark


class DirectRoute(APIRoute):
    """A route whose endpoint may be served by a hand-written `request -> response` handler (`direct`): on a hot
    path FastAPI's dependency solving and response-model serialization cost as much as the work itself. The
    endpoint's signature (dependencies, response model) still makes the OpenAPI document."""

    def get_route_handler(self) -> DirectHandler:
        handler: DirectHandler | None = getattr(self.endpoint, "direct_handler", None)
        return handler if handler is not None else super().get_route_handler()


def scope_doc(scope: str) -> dict[str, Any]:
    """OpenAPI extras naming the scope a route requires."""
    return {"x-required-scope": scope}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes is over the limit of {limit}", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body is over the limit of {limit} bytes", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, loc: str = "/") -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HubError(f"malformed JSON: {exc}", [{"loc": loc, "msg": str(exc)}], code="malformed_json") from exc


def require_json(request: Request, *allowed: str) -> str:
    kind = media_type(request)
    if kind not in allowed:
        raise UnsupportedMedia(
            f"unsupported Content-Type {kind or '(none)'!r}; send one of {list(allowed)}",
            [{"loc": "/headers/content-type", "msg": f"expected one of {list(allowed)}"}],
        )
    return kind


async def json_model(request: Request, model: type[M], limit: int) -> M:
    """A JSON body read within `limit`, parsed with orjson (bounded depth) and validated as `model`."""
    require_json(request, "application/json")
    value = parse_json(await read_body(request, limit))
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        details = validation_details(exc)
        raise Invalid("the request body does not match the API", details, code="invalid_request") from exc


def body_doc(model: type[BaseModel], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI `requestBody` for a route that reads its body itself."""
    content: dict[str, Any] = {"schema": model.model_json_schema()}
    if examples is None:
        extra = model.model_config.get("json_schema_extra")
        listed = extra.get("examples", []) if isinstance(extra, dict) else []
        examples = {f"example{i + 1}": v for i, v in enumerate(listed if isinstance(listed, list) else [])}
    if examples:
        content["examples"] = {k: {"value": v} for k, v in examples.items()}
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def cursor_query(size: int) -> Any:
    """The `cursor` parameter, with its format in the document; `cursors.decode` enforces it (422
    `invalid_cursor`)."""
    return Query(
        None,
        description="`next` of the previous page",
        json_schema_extra={"pattern": cursors.pattern(size), "maxLength": cursors.MAX_LENGTH},
    )


def time_query(description: str) -> Any:
    """A time-bound query parameter, declared `format: date-time` (RFC 3339); read with `query_time`."""
    # An empty value is no time: refused like any other string that is not one (the document says date-time).
    return Query(None, description=description, min_length=1, max_length=64, json_schema_extra={"format": "date-time"})


FIRST, LAST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def _edge_of_time(value: str) -> datetime | None:
    """A well-formed RFC 3339 time Python cannot hold (year 0, or an offset past year 9999) is still a bound:
    before or after every stored time."""
    year = value[:4]
    if not year.isdigit():
        return None
    try:
        parse_time("2000" + value[4:])  # the same time in a representable (and leap) year
    except ValueError:
        return None
    return FIRST if int(year) <= 1 else LAST if int(year) >= 9999 else None


def query_time(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        edge = _edge_of_time(value)
        if edge is not None:
            return edge
        raise Invalid(
            f"{name} is not an RFC 3339 time with offset: {exc}",
            [{"loc": f"/query/{name}", "msg": str(exc)}],
            code="invalid_request",
        ) from exc


EXPORT_TYPES = {"text/csv": "csv", "application/jsonl": "jsonl", "application/x-ndjson": "ndjson"}


def negotiate(request: Request) -> str:
    """`json` (default), `csv`, `jsonl` or `ndjson` from the Accept header; 406 when nothing we serve fits."""
    accept = request.headers.get("accept", "")
    if not accept.strip():
        return "json"
    offered = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    for media in offered:
        if media in EXPORT_TYPES:
            return EXPORT_TYPES[media]
        if media in ("application/json", "*/*", "application/*"):
            return "json"
    raise NotAcceptable(
        f"cannot answer with any of {offered}; use application/json, text/csv, application/jsonl or application/x-ndjson",
        [{"loc": "/headers/accept", "msg": "no acceptable type"}],
    )


def streamed(chunks: AsyncIterator[bytes], fmt: str, filename: str) -> StreamingResponse:
    """An export in `fmt` (negotiated), streamed as an attachment named `filename`."""
    return StreamingResponse(
        chunks, media_type=MEDIA_TYPES[fmt], headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
