"""`source.browse` over RPC: what a source can subscribe under a path, answered by any instance serving it.

Every instance serving a source consumes the source's RPC queue (`amqp.source_rpc_queue`), so the hub's
request reaches one of them. The connector lists with the connection parameters of the request (validated by its
`browse_model`, secrets resolved like a subscription's, targets checked by the egress policy like a read's).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from tributary_common import rpc_contracts as rc
from tributary_common.rpc import RpcError, RpcServer

from .sdk import BadParams, BrowseFailed, Connector, Refused, SecretRefused, SecretResolver

log = logging.getLogger(__name__)
MAX_ERROR = 500


@dataclass(eq=False)
class Browser:
    source: str
    connector: Connector[Any]
    secrets: SecretResolver
    instance_id: str
    timeout_s: float
    rpc: RpcServer = field(init=False, default_factory=RpcServer)

    def __post_init__(self) -> None:
        self.rpc.register(rc.SOURCE_BROWSE, self.browse)

    async def browse(self, raw: dict[str, Any]) -> rc.BrowseResult:
        request = rc.BrowseRequest.model_validate(raw)
        if type(self.connector).browse_model is None:
            raise RpcError("not_browsable", f"source {self.source!r} cannot be browsed")
        try:
            params = type(self.connector).parse_browse(request.params, self.secrets)
        except SecretRefused as exc:
            raise RpcError("secret", str(exc)) from None
        except BadParams as exc:
            raise RpcError("invalid", str(exc)) from None
        try:
            async with asyncio.timeout(self.timeout_s):
                listing = await self.connector.browse(request.path, params, request.limit)
        except Refused as exc:
            raise RpcError("refused", _short(exc)) from None
        except TimeoutError:
            raise RpcError("unreachable", f"no answer within {self.timeout_s} s") from None
        except BrowseFailed as exc:
            raise RpcError("browse_failed", _short(exc)) from None
        except OSError as exc:
            raise RpcError("unreachable", _short(exc)) from None
        except Exception as exc:
            log.info("browsing %s at %r failed", self.source, request.path, exc_info=True)
            raise RpcError("browse_failed", f"{type(exc).__name__}: {_short(exc)}") from None
        # An item's params complete the request's as given (secrets stay references, never resolved values), less
        # what only browsing takes (mqtt's listen_s): they are a subscription's params.
        fields = type(self.connector).params_model.model_fields
        items = [
            item
            if item.params is None
            else item.model_copy(
                update={"params": {k: v for k, v in {**request.params, **item.params}.items() if k in fields}}
            )
            for item in listing.items[: request.limit]
        ]
        return rc.BrowseResult(
            source=self.source,
            path=request.path,
            items=items,
            truncated=listing.truncated or len(listing.items) > request.limit,
            note=listing.note,
            instance_id=self.instance_id,
        )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"
