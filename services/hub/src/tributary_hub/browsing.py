"""Browsing a source: the hub asks an ingest instance serving it, over RPC (`source.browse` on the source's queue).

The hub refuses first what it can judge itself, as for unitop items: an unknown or unserved source, a literal
credential in a secret field (browse parameters travel in a URL: only references), a target the egress policy
refuses. The rest (the connector's parameter model, reaching the endpoint) is the answering instance's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from tributary_common import rpc_contracts as rc
from tributary_common.amqp import RpcClient, source_rpc_queue
from tributary_common.egress import EgressPolicy
from tributary_common.rpc import RpcError
from tributary_common.secrets import literal_secrets
from tributary_common.timeutil import utcnow

from .documents import SourceInstanceDoc
from .egress_fields import EgressCheck, marked_fields
from .errors import Invalid, NotFound, Unavailable, UpstreamFailed, UpstreamTimeout

# Longer than ingest's own browse timeout (TRIBUTARY_BROWSE_TIMEOUT_S, 10 s by default), so its answer comes first.
TIMEOUT_S = 30.0
_INVALID = {"invalid", "secret", "not_browsable", "refused"}


async def browse(
    rpc: RpcClient | None,
    policy: EgressPolicy,
    source: str,
    path: str,
    params: dict[str, Any],
    limit: int,
) -> rc.BrowseResult:
    docs = await SourceInstanceDoc.find(SourceInstanceDoc.source == source).sort("-received_at").to_list()
    if not docs:
        raise NotFound(f"source {source!r} has not been announced by any ingest instance")
    now = utcnow()
    if rpc is None or not any(d.received_at + timedelta(seconds=d.ttl_s) >= now for d in docs):
        raise Unavailable(f"no ingest instance serves source {source!r} now", code="no_instance")
    schema = orjson.loads(docs[0].subscription_schema_text)
    problems = [{"loc": f"/params{loc}", "msg": msg} for loc, msg in literal_secrets(schema, params)]
    problems += await EgressCheck(policy).problems(params, marked_fields(schema), "/params")
    if problems:
        raise Invalid(f"browse parameters of {source!r} refused", problems, code="invalid_params")
    request = rc.BrowseRequest(path=path, params=params, limit=limit)
    try:
        reply = await rpc.call(source_rpc_queue(source).name, rc.SOURCE_BROWSE, request.model_dump(), timeout=TIMEOUT_S)
    except RpcError as exc:
        if exc.code in _INVALID:
            raise Invalid(exc.message, [{"loc": "/params", "msg": exc.message}], code=exc.code) from None
        if exc.code == "timeout":
            raise UpstreamTimeout(f"no ingest instance answered within {TIMEOUT_S} s") from None
        raise UpstreamFailed(exc.message, code=exc.code) from None
    return rc.BrowseResult.model_validate(reply)
