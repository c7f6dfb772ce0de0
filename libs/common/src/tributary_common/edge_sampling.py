"""A request's trace decided once, at the edge, before FastAPI builds a span for it.

FastAPI's telemetry builds every request's server span (attributes, context, wrapped send and receive) and only
then asks the sampler: at 10 % sampling nine requests in ten pay ~40 us of CPU here for a span nobody sees.
`exclude_unsampled` (FastAPI's `telemetry["exclude"]` hook) asks the configured sampler first, for a request that
starts a trace (no `traceparent` header); FastAPI skips its telemetry for the requests the sampler drops, and
`EdgeSampler` (which `setup_tracing` wraps around the configured sampler) samples the server span of the requests
it keeps, without asking again (asking twice would keep ratio squared of them). While a dropped request is
handled, every root span it would start is dropped too (the publish span among them: no trace without its request).
Requests that carry a `traceparent` are left to the sampler as before (parent-based: their caller decided).

The decision lives in a context variable of the request's task: uvicorn runs each request in a task of its own,
with a fresh context, so it ends with the request. A caller that runs the app in its own task (an in-process test
client) keeps the last request's decision until its next request.

`EdgeDecision` (what `http_server` hands uvicorn) makes the decision before the app is called, so that FastAPI
does not even reach its hook: it marks a dropped request with FastAPI's own scope key for a request its telemetry
does not observe (`fastapi.telemetry`, which FastAPI sets itself for mounted apps), and FastAPI goes straight to its
routes. At 10 % sampling the nine requests in ten spent ~25 us of the hub's ~310 on their way past FastAPI's
telemetry (its enabled check, a walk of the middleware stack looking for a legacy middleware, the hook, a context
attached and detached); the decision itself is the same. A request it keeps (or leaves to a caller's `traceparent`)
gets its server span there too, made by `server_spans` for a third of what FastAPI's telemetry spends on it, and
FastAPI is told to leave that request alone in the same way. Tracing off, FastAPI's telemetry is left as it is.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Unpack

from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes
from starlette.types import ASGIApp, Receive, Scope, Send

from .server_spans import traced

# True: the request's server span is to be sampled (consumed by it); False: the request's trace is dropped.
_DECISION: ContextVar[bool | None] = ContextVar("tributary_edge_decision", default=None)
# FastAPI's scope key: present, its telemetry leaves the request alone (it sets None itself for excluded requests).
_FASTAPI_UNOBSERVED = "fastapi.telemetry"


class EdgeSampler(Sampler):
    """`inner`, except for a root span while the edge has decided the request's trace."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        decided = _DECISION.get()
        if decided is not None and not trace.get_current_span(parent_context).get_span_context().is_valid:
            if decided:
                _DECISION.set(None)  # the request's own span; what it starts are children, sampled by it
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"EdgeSampler{{{self.inner.get_description()}}}"  # type: ignore[no-untyped-call]  # untyped in the SDK


def dropped_at_the_edge() -> bool:
    """Whether the current request's trace was dropped at the edge (no span of it can be seen)."""
    return _DECISION.get() is False


def _decide(scope: Scope) -> bool | None:
    """The edge's decision for a request that starts a trace (also set in the request's context); None where the
    edge does not decide (no edge sampler; a `traceparent`: the caller decided)."""
    sampler = getattr(trace.get_tracer_provider(), "sampler", None)
    if not isinstance(sampler, EdgeSampler) or any(name == b"traceparent" for name, _ in scope.get("headers", ())):
        _DECISION.set(None)
        return None
    # The SDK's own trace ids are random 128-bit numbers too; ratio samplers read their low 64 bits.
    result = sampler.inner.should_sample(None, random.getrandbits(128) or 1, "HTTP", SpanKind.SERVER)
    keep = result.decision is Decision.RECORD_AND_SAMPLE
    _DECISION.set(keep)
    return keep


def exclude_unsampled(scope: Scope) -> bool:
    """FastAPI's `telemetry["exclude"]` hook (an app served without `EdgeDecision`): True for a request whose new
    trace the sampler drops."""
    return _decide(scope) is False


def tracing_off(provider: trace.TracerProvider) -> bool:
    """No tracer provider set (the API's proxy) or a no-op one: no span can be recorded."""
    return isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class EdgeDecision:
    """An ASGI app deciding each HTTP request's trace at the edge before calling `app`, and making the server span
    of a request it keeps (see the module's text)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _FASTAPI_UNOBSERVED in scope:
            await self.app(scope, receive, send)
            return
        decided = _decide(scope)
        if decided is False:
            scope[_FASTAPI_UNOBSERVED] = None  # FastAPI's telemetry stays out of a dropped request
            await self.app(scope, receive, send)
            return
        provider = trace.get_tracer_provider()
        if tracing_off(provider):
            await self.app(scope, receive, send)
            return
        scope[_FASTAPI_UNOBSERVED] = None  # its span is made here
        await traced(self.app, scope, receive, send, provider)


def fastapi_telemetry(**settings: Unpack[TelemetryConfig]) -> TelemetryConfig:
    """A FastAPI app's `telemetry` setting: `settings`, with the edge's decision as its `exclude` hook."""
    return {**settings, "exclude": exclude_unsampled}
