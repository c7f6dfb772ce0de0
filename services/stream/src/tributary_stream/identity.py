"""`/whoami` on the stream: the caller as this service sees it (the same verifier and claim map as the hub)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from tributary_common.http_auth import bearer_token
from tributary_common.identity import WhoAmI, whoami
from tributary_common.openapi import error_responses

from .service import StreamService

router = APIRouter(tags=["identity"])


@router.get(
    "/whoami",
    response_model=WhoAmI,
    summary="Who the credentials are: subject, kind, scopes, ACLs, expiry",
    responses=error_responses(401, (503, "The credentials cannot be checked now (the hub or the key set)")),
)
async def get_whoami(request: Request) -> WhoAmI:
    service: StreamService = request.app.state.service
    principal, _ = await service.authenticate(bearer_token(request))
    request.state.principal = principal.subject  # for the access log
    return whoami(principal)
