"""The connector SDK: what a third-party connector author writes against.

A connector is a class with a pydantic `params_model` (one subscription's parameters), a `capacity`, and either
a `read(sid, params)` loop (the simple way: the framework runs one per subscription, cancels it on unsubscribe
and restarts it with backoff when it raises) or its own `subscribe`/`unsubscribe` pair. Samples go out through
`self.sink.emit(sid, t, v)`; leases, demand, batching, deduplication, backoff and telemetry are the framework's.

A params field typed `Secret` holds a credential: users give `{"secret": "NAME"}` and the framework resolves it
(`TRIBUTARY_SECRETS_DIR/NAME` or `TRIBUTARY_SECRET_<NAME>`) before the connector sees its params, so a connector
reads a plain `str`. The field's JSON Schema carries the marker the hub uses to refuse and mask literal values.
A `Headers` field takes literal values, except under credential-bearing names, where it takes only references.

A params field's `default` (not `default_factory`) appears in the announced schema, so the hub can leave a value
equal to it out of the canonical params: written out or not, it is one subscription (one `sid`).

Optional, two more hooks. `history(sid, params, since, until)` yields what the source recorded in `(since, until]`:
after a lease changes hands or a read restarts (a reconnect), the framework reads it from the sid's watermark
before the live samples it held meanwhile, so there is neither a gap nor a duplicate at the seam. `browse(path,
params, limit)` with a `browse_model` lists what can be subscribed under `path` (`GET /sources/{source}/browse`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from tributary_common.rpc_contracts import BrowseItem
from tributary_common.tasks import cancel_and_wait

# Part of the SDK, re-exported: the credential field types and what resolves them.
from .secret_fields import SECRET_ERROR
from .secret_fields import SECRETS_CONTEXT as SECRETS_CONTEXT
from .secret_fields import Headers as Headers
from .secret_fields import Secret as Secret
from .secret_fields import SecretResolver as SecretResolver

if TYPE_CHECKING:
    from .settings import IngestSettings

SampleValue = bool | int | float | str | None
Quality = int | str | None

P = TypeVar("P", bound=BaseModel)

log = logging.getLogger(__name__)


class Sink(Protocol):
    """What the framework gives a connector to hand over what it reads."""

    def emit(self, sid: str, t: datetime, v: SampleValue, q: Quality = None) -> None:
        """One sample of subscription `sid`. `t` should be timezone-aware (naive means UTC).

        Samples not strictly after the last one of `sid` are dropped (counted), so re-reading is harmless.
        """

    def emit_many(self, sid: str, rows: Iterable[tuple[datetime, SampleValue, Quality]]) -> None:
        """Samples of `sid` in order, `(t, v, q)` each: the same as `emit` of each, with less work per sample.
        For sources that read in bursts (replays, simulations, backfills)."""

    async def room(self, sid: str) -> None:
        """Wait while `sid` has a full buffer (the broker is behind). Sources that can read faster than they are
        published (replays, simulations, backfills) call it between bursts; others need not."""

    def warn(self, sid: str, message: str) -> None:
        """A data problem that does not stop the read (an unparsable message, a missing field): logged, counted."""

    def fail(self, sid: str, error: BaseException) -> None:
        """The read of `sid` broke: the framework unsubscribes it and subscribes again after a jittered backoff.

        Only push-style connectors (own `subscribe`/`unsubscribe`) need this: an exception out of `read` does it.
        """


class BadParams(ValueError):
    """Subscription parameters that the source's model refuses; the message names each field and the problem."""


class Refused(RuntimeError):
    """A read the operator's policy does not allow (egress allow-list, csv roots, a size cap). Raised out of `read`
    (or handed to `sink.fail`): logged, counted as `refused`, and retried with backoff like any failure."""


class BrowseFailed(RuntimeError):
    """Browsing reached the endpoint but could not list (an unknown node, a server error); the message says why."""


@dataclass
class Listing:
    """What `browse` found under a path: `note` says why it is empty or how to read it."""

    items: list[BrowseItem] = field(default_factory=list)
    note: str | None = None
    truncated: bool = False


HistoryRow = tuple[datetime, SampleValue, Quality]


class SecretRefused(BadParams):
    """A secret reference in the parameters that cannot be resolved (unknown name, unreadable file)."""


def describe_validation_error(exc: ValidationError, prefix: str = "params") -> str:
    """`params.rate_hz: Input should be greater than 0; params.signal: Field required` - one line, every error."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in (prefix, *err["loc"]))
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class Connector(Generic[P]):
    """Base class of every source. Subclass it, set `params_model`, and implement `read` (or subscribe/unsubscribe).

    The framework creates one instance per source per process with `Connector(sink)`, calls `start()` once, then
    `subscribe`/`unsubscribe` as leases come and go, and `stop()` at shutdown.
    """

    params_model: ClassVar[type[BaseModel]]
    # The connection parameters `browse` takes (None: the source cannot be browsed).
    browse_model: ClassVar[type[BaseModel] | None] = None
    # How many subscriptions one instance of this connector may hold; a full instance takes no more leases.
    capacity: int = 1000

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._reads: dict[str, asyncio.Task[None]] = {}

    @classmethod
    def parse_params(cls, params: dict[str, Any], secrets: SecretResolver | None = None) -> P:
        """Validate raw parameters, resolving secret references with `secrets`; raises `BadParams` with a message
        naming every bad field (`SecretRefused` when a secret cannot be resolved)."""
        context = {SECRETS_CONTEXT: secrets}
        try:
            return cls.params_model.model_validate(params, context=context)  # type: ignore[return-value]
        except ValidationError as exc:
            error = SecretRefused if any(e["type"] == SECRET_ERROR for e in exc.errors()) else BadParams
            raise error(describe_validation_error(exc)) from None

    @classmethod
    def parse_browse(cls, params: dict[str, Any], secrets: SecretResolver | None = None) -> BaseModel:
        """Validate browse parameters like `parse_params` (`BadParams` naming every bad field)."""
        if cls.browse_model is None:
            raise BadParams("this source cannot be browsed")
        try:
            return cls.browse_model.model_validate(params, context={SECRETS_CONTEXT: secrets})
        except ValidationError as exc:
            error = SecretRefused if any(e["type"] == SECRET_ERROR for e in exc.errors()) else BadParams
            raise error(describe_validation_error(exc)) from None

    @classmethod
    def has_history(cls) -> bool:
        return cls.history is not Connector.history

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        return cls.params_model.model_json_schema()

    @classmethod
    def configure(cls, settings: IngestSettings) -> type[Connector[Any]] | None:
        """The class to serve under the operator's `settings` (e.g. a subclass bound to its limits), or None to
        serve nothing: the source is then neither announced nor read. The default serves `cls` as it is."""
        return cls

    async def start(self) -> None:
        """Once, before the first subscribe (open shared connections here)."""

    async def stop(self) -> None:
        """Once, at shutdown, after every unsubscribe."""

    async def read(self, sid: str, params: P) -> None:
        """Read `sid` until cancelled, calling `self.sink.emit`. Raise to have it restarted with backoff."""
        raise NotImplementedError(f"{type(self).__name__} must implement read() or subscribe()/unsubscribe()")

    def history(self, sid: str, params: P, since: datetime, until: datetime) -> AsyncIterator[HistoryRow]:
        """The recorded samples of `sid` with `since < t <= until`, oldest first (an async generator). Raise
        `Refused` or any error to skip the backfill (logged, counted); the live read goes on regardless."""
        raise NotImplementedError

    async def browse(self, path: str, params: Any, limit: int) -> Listing:
        """What can be subscribed under `path` (at most `limit` items), `params` an instance of `browse_model`.
        Raise `Refused` for a target the policy refuses, `BrowseFailed` or `OSError` when it cannot be listed."""
        raise NotImplementedError

    async def subscribe(self, sid: str, params: P) -> None:
        """Start reading `sid`. The default runs `read(sid, params)` in a task; override for push-style sources."""
        if sid in self._reads:  # never two reads of one sid
            await self.unsubscribe(sid)
        self._reads[sid] = asyncio.create_task(self._run_read(sid, params), name=f"read:{sid}")

    async def unsubscribe(self, sid: str) -> None:
        """Stop reading `sid` and release what it holds; must not raise when `sid` is unknown."""
        await cancel_and_wait(self._reads.pop(sid, None))

    async def _run_read(self, sid: str, params: P) -> None:
        try:
            await self.read(sid, params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the framework, which logs and retries
            if self._reads.get(sid) is asyncio.current_task():
                self._reads.pop(sid, None)
            self.sink.fail(sid, exc)
        else:
            log.info("read of %s ended", sid)
            if self._reads.get(sid) is asyncio.current_task():
                self._reads.pop(sid, None)
