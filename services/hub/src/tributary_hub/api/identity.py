"""`/whoami`: the caller as the hub sees it (scopes after the claim map, ACLs, expiry)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tributary_common.auth import Principal
from tributary_common.identity import WhoAmI, whoami

from .contract import errors
from .deps import require

router = APIRouter(tags=["identity"])


@router.get(
    "/whoami",
    response_model=WhoAmI,
    summary="Who the credentials are: subject, kind, scopes, ACL patterns, expiry",
    description="Any valid token or API key. Scopes are those Tributary grants, after `TRIBUTARY_CLAIM_MAP` maps "
    "the identity provider's `scp`, `roles` and `groups`: the first thing to look at when a route answers 403.",
    responses=errors(),
    openapi_extra={"x-required-scope": "any"},  # any valid credentials, whatever their scopes
)
async def get_whoami(principal: Principal = Depends(require(None))) -> WhoAmI:
    return whoami(principal)
