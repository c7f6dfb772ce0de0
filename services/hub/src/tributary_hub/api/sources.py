"""`/sources/{source}/browse`: what a source can subscribe under a path, listed by an ingest instance serving it."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request

from tributary_common.auth import Principal
from tributary_common.json_depth import nests_deeper_than
from tributary_common.rpc_contracts import MAX_BROWSE_ITEMS, BrowseResult
from tributary_common.unitops import MAX_PARAMS_DEPTH

from ..browsing import browse
from ..errors import Invalid
from .contract import errors
from .deps import hub_of, require, scope_doc

router = APIRouter(tags=["unitops"])
MAX_PARAMS_CHARS = 8192


@router.get(
    "/sources/{source}/browse",
    response_model=BrowseResult,
    summary="Browse what a source can subscribe under a path",
    description="Answered by an ingest instance serving the source: OPC UA nodes, MQTT topics seen, CSV files and "
    "columns (Modbus has no browsing: its registers are configuration, and the answer says so). `params` is a JSON "
    "object with the connection part of a subscription's params (endpoint, broker, folder); credentials only as "
    '`{"secret": "NAME"}` references. Each item\'s `path` browses under it; its `params`, when present, read it. '
    "422 for parameters the hub or the connector refuses (egress policy, bad fields, a source without browsing); "
    "502 when the endpoint cannot be reached or listed; 504 when no instance answered in time.",
    responses=errors(
        (404, "Source never announced"),
        (502, "The connector could not reach or list the endpoint"),
        (504, "No ingest instance answered in time"),
    ),
    openapi_extra={
        **scope_doc("unitops:write"),
        # A JSON object in the query: declared as such, so that generated clients serialize it and testers send one.
        "parameters": [
            {
                "name": "params",
                "in": "query",
                "required": False,
                "description": "JSON object: the connection params (credentials as secret references)",
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "maxProperties": 64},
                        "example": {"endpoint": "opc.tcp://plc.example.com:4840"},
                    }
                },
            }
        ],
    },
)
async def browse_source(
    request: Request,
    source: str = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["opcua"]),
    path: str = Query("", max_length=1024, description="Where to list (empty: the top)", examples=["ns=2;i=1"]),
    limit: int = Query(200, ge=1, le=MAX_BROWSE_ITEMS),
    principal: Principal = Depends(require("unitops:write")),
) -> BrowseResult:
    params = request.query_params.get("params", "{}")
    if len(params) > MAX_PARAMS_CHARS:
        raise Invalid(f"params is over {MAX_PARAMS_CHARS} characters", [{"loc": "/query/params", "msg": "too long"}])
    try:
        parsed = orjson.loads(params)
    except orjson.JSONDecodeError as exc:
        raise Invalid("params is not JSON", [{"loc": "/query/params", "msg": str(exc)}]) from None
    if not isinstance(parsed, dict):
        raise Invalid("params must be a JSON object", [{"loc": "/query/params", "msg": "not an object"}])
    if nests_deeper_than(parsed, MAX_PARAMS_DEPTH):  # as a subscription's: deeper ones could not be sent on (a 500)
        msg = f"nests deeper than {MAX_PARAMS_DEPTH} levels"
        raise Invalid(f"params {msg}", [{"loc": "/query/params", "msg": msg}])
    hub = hub_of(request)
    rpc = hub.broker.client if hub.broker is not None else None
    return await browse(rpc, hub.settings.egress_policy(), source, path, parsed, limit)
