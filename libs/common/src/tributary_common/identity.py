"""`GET /whoami`: who the service takes the caller to be, the same answer from the hub and the stream."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from .auth import Principal


class WhoAmI(BaseModel):
    subject: str = Field(description="`sub` of the token, or `apikey:<id>`")
    kind: Literal["token", "api_key"]
    scopes: list[str] = Field(description="Tributary scopes, after the claim map (`TRIBUTARY_CLAIM_MAP`)")
    topics: list[str] | None = Field(description="Topic ACL patterns; null: every topic the scopes allow")
    unitops: list[str] | None = Field(description="Unitop name patterns; null: every unitop")
    expires_at: datetime | None = Field(description="When the credentials stop working; null: never")


def whoami(principal: Principal) -> WhoAmI:
    exp = principal.expires_at
    return WhoAmI(
        subject=principal.subject,
        kind="api_key" if principal.kind == "api_key" else "token",
        scopes=sorted(principal.scopes),
        topics=None if principal.topics is None else list(principal.topics),
        unitops=None if principal.unitops is None else list(principal.unitops),
        expires_at=None if exp is None else datetime.fromtimestamp(exp, UTC),
    )
