"""Each HTTP request's server span, made at the edge (`edge_sampling.EdgeDecision`) in place of FastAPI's telemetry.

FastAPI's telemetry builds a good span at a high price: at 100 % sampling it cost the hub ~120 us of CPU per
request (~45 % of an untraced request: its own span plus two context attachments, a wrapped receive and send, the
Host header parsed into a `Headers` and a URL every time, attributes set twice), against ~40 us for the same span
made here (bench/README.md, Hub publish, tenth pass). The same span: named `METHOD route` (the method alone where
no route matched, `HTTP` for a method outside the standard ones), kind SERVER, the caller's `traceparent` (and
baggage) as its parent, and the HTTP semantic-convention attributes FastAPI sets: `url.scheme`,
`http.request.method` (and `_original`), `network.protocol.version`, `server.address` / `server.port` (from Host),
`url.path`, `url.query` (values of credential-like parameters redacted; left out past 4 KiB or 64 parameters),
`http.route`, `http.response.status_code`, and `error.type` with an ERROR status for a 5xx answer or an exception
that escapes the app. It ends when the app returns (FastAPI: at the last body message, which the app sends just
before it returns). WebSocket connections keep FastAPI's spans.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .secrets import is_credential_name

_METHODS = frozenset({"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# FastAPI's own list (signed-URL parameters), and any parameter named like a credential (`is_credential_name`).
_SIGNATURES = frozenset({"AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"})
QUERY_MAX_BYTES, QUERY_MAX_FIELDS = 4096, 64  # a longer query is left out of the span
_AUTHORITIES_MAX = 256  # Host values remembered with their attributes (a client chooses them: bounded)
_AUTHORITY_KEPT_BYTES = 300  # the longest remembered (a DNS name is at most 253 bytes)
_authorities: dict[tuple[bytes, str], dict[str, Any]] = {}
# The last provider's tracer (getting one builds it and its scope every time) and the last propagator's header names
# (built anew on every ask), each with what it came from: held, so that a new one is never taken for it.
_tracer: tuple[trace.TracerProvider, trace.Tracer] | None = None
_fields: tuple[Any, frozenset[bytes]] | None = None


def tracer_of(provider: trace.TracerProvider) -> trace.Tracer:
    global _tracer
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer(__name__))
    return _tracer[1]


def _propagated(textmap: Any) -> frozenset[bytes]:
    global _fields
    if _fields is None or _fields[0] is not textmap:
        _fields = (textmap, frozenset(f.encode("latin-1") for f in textmap.fields))
    return _fields[1]


def server_attributes(authority: bytes | None, scheme: str, server: tuple[str, int] | None) -> dict[str, Any]:
    """`server.address` and `server.port` from the Host header (else the socket), nothing from a malformed one."""
    if authority is None:
        address, port = server or (None, None)
        if address is None:
            return {}
        return {"server.address": address, **({"server.port": port} if port is not None else {})}
    known = _authorities.get((authority, scheme))
    if known is not None:
        return known
    try:
        url = urlsplit("//" + authority.decode("latin-1"))
        address, port = url.hostname, url.port
        malformed = url.username is not None or bool(url.path or url.query or url.fragment)
    except ValueError:
        address, port, malformed = None, None, True
    found: dict[str, Any] = {}
    if address and not malformed:
        found["server.address"] = address
        port = port if port is not None else _DEFAULT_PORTS.get(scheme)
        if port is not None:
            found["server.port"] = port
    if len(authority) <= _AUTHORITY_KEPT_BYTES:  # a name and a port: a 64 KiB Host is parsed, not remembered
        if len(_authorities) >= _AUTHORITIES_MAX:
            _authorities.clear()
        _authorities[(authority, scheme)] = found
    return found


def redacted_query(query: bytes) -> str | None:
    """The query with credential values redacted; None for one too long to be worth its parsing (a client may send
    64 KiB of parameters, and a `traceparent` that has its request sampled)."""
    if len(query) > QUERY_MAX_BYTES:
        return None
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, max_num_fields=QUERY_MAX_FIELDS)
    except ValueError:
        return None
    return urlencode([(k, "REDACTED" if k in _SIGNATURES or is_credential_name(k) else v) for k, v in pairs])


def _route(scope: Scope, entry_root: str) -> str | None:
    """The matched route's path template, under the path of the mount it is in (an app mounted whole, the console's
    files: the mount's path and `/{path}`), as FastAPI's telemetry names it. FastAPI's router puts its own routes in
    the scope; a mount shows by the root path it added."""
    root = scope.get("root_path", "")
    prefix = root[len(entry_root) :].rstrip("/") if root != entry_root and root.startswith(entry_root) else ""
    path = getattr(scope.get("route"), "path_format", None)
    if isinstance(path, str):
        return prefix + path
    return prefix + "/{path}" if prefix else None


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


async def traced(app: ASGIApp, scope: Scope, receive: Receive, send: Send, provider: trace.TracerProvider) -> None:
    """Run `app` for one HTTP request under its server span."""
    carrier: dict[str, str] = {}
    authority: bytes | None = None
    wanted = _propagated(propagate.get_global_textmap())
    for name, value in scope.get("headers", ()):
        if name == b"host":
            authority = authority or value
        elif name in wanted:
            text, given = name.decode("latin-1"), value.decode("latin-1")
            # Several of one (baggage): joined, as the propagators read one value.
            carrier[text] = f"{carrier[text]},{given}" if text in carrier else given
    parent: Context | None = propagate.extract(carrier) if carrier else None
    original = scope.get("method", "")
    method = original if original in _METHODS else "_OTHER"
    scheme = scope.get("scheme", "http")
    attributes: dict[str, Any] = {"url.scheme": scheme, "http.request.method": method}
    if scope.get("http_version"):
        attributes["network.protocol.version"] = scope["http_version"]
    attributes.update(server_attributes(authority, scheme, scope.get("server")))
    attributes["url.path"] = scope["path"]
    if scope.get("query_string") and (query := redacted_query(scope["query_string"])) is not None:
        attributes["url.query"] = query
    if original != method:
        attributes["http.request.method_original"] = original
    span_method = method if method != "_OTHER" else "HTTP"
    span = tracer_of(provider).start_span(span_method, context=parent, kind=SpanKind.SERVER, attributes=attributes)
    status: int | None = None

    async def send_noting_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    entry_root = scope.get("root_path", "")
    token = context.attach(trace.set_span_in_context(span, parent))
    error: BaseException | None = None
    try:
        await app(scope, receive, send_noting_status)
    except BaseException as exc:
        error = exc
        raise
    finally:
        context.detach(token)
        _end(span, span_method, _route(scope, entry_root), status, error)


def _end(
    span: trace.Span, span_method: str, route: str | None, status: int | None, error: BaseException | None
) -> None:
    ended: dict[str, Any] = {}
    if route is not None:
        ended["http.route"] = route
        span.update_name(f"{span_method} {route}")
    if status is not None:
        ended["http.response.status_code"] = status
    if error is not None or status is None or status >= 500:
        if error is not None:
            ended["error.type"] = _error_type(error)
        else:
            ended["error.type"] = str(status) if status is not None else "incomplete_response"
        span.set_status(StatusCode.ERROR)
    span.set_attributes(ended)
    span.end()
