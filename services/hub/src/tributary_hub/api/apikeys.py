"""`/apikeys`: machine credentials, created by an admin; the secret is returned once and stored hashed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from tributary_common.auth import Principal

from .contract import JSON_BODY, documented, errors
from .deps import body_doc, hub_of, json_model, require, scope_doc
from .models import ApiKeyCreate, ApiKeyCreated, ApiKeyList

router = APIRouter(tags=["api keys"])
ADMIN = (403, "Not an admin")


@router.post(
    "/apikeys",
    status_code=201,
    response_model=ApiKeyCreated,
    summary="Create an API key (the secret is in this answer only)",
    description="Use the key as a bearer token (`Authorization: Bearer trk_…`) on the hub and the stream service. "
    "Its scopes and optional `topics`/`unitops` ACL patterns work as a JWT's. Requires `admin`.",
    responses=errors(ADMIN, *JSON_BODY),
    openapi_extra={
        **scope_doc("admin"),
        **body_doc(
            ApiKeyCreate,
            {"gateway": {"name": "line3-gateway", "scopes": ["events:publish"], "topics": ["sensor-reading.plant1.#"]}},
        ),
    },
)
async def create_key(request: Request, principal: Principal = Depends(require("admin"))) -> ApiKeyCreated:
    hub = hub_of(request)
    body = await json_model(request, ApiKeyCreate, hub.settings.max_body_bytes)
    view, secret = await hub.apikeys.create(
        name=body.name,
        scopes=body.scopes,
        topics=body.topics,
        unitops=body.unitops,
        created_by=principal.subject,
        expires_at=body.expires_at,
    )
    await hub.audit.record(principal.subject, "apikey.created", view["id"], None, view)  # never the secret
    return ApiKeyCreated.model_validate({**view, "key": secret})


@router.get(
    "/apikeys",
    response_model=ApiKeyList,
    summary="API keys (never their secrets), with their expiry and last use",
    **documented("admin", errors(ADMIN)),
)
async def list_keys(request: Request, principal: Principal = Depends(require("admin"))) -> ApiKeyList:
    return ApiKeyList.model_validate({"items": await hub_of(request).apikeys.all()})


@router.delete(
    "/apikeys/{key_id}",
    status_code=204,
    summary="Revoke an API key",
    **documented("admin", errors(ADMIN, (404, "Unknown API key"))),
)
async def delete_key(key_id: str, request: Request, principal: Principal = Depends(require("admin"))) -> Response:
    hub = hub_of(request)
    before = await hub.apikeys.delete(key_id)
    await hub.audit.record(principal.subject, "apikey.deleted", key_id, before, None)
    return Response(status_code=204)
