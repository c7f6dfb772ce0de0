"""Development tokens for tests: a `Minter` holds the secret the services under test were given, and the scopes
and subject a token gets when the test does not say."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tributary_common.auth import SCOPES, mint_token

DAY_S = 24 * 3600


@dataclass(frozen=True)
class Minter:
    secret: str
    scopes: Sequence[str] = tuple(SCOPES)
    subject: str = "dev"

    def __call__(
        self,
        scopes: Sequence[str] | None = None,
        *,
        subject: str | None = None,
        topics: list[str] | None = None,
        unitops: list[str] | None = None,
        ttl_s: int = DAY_S,
    ) -> str:
        """A signed token; no (or empty) `scopes` means this minter's default scopes."""
        return mint_token(
            self.secret,
            subject=subject or self.subject,
            scopes=list(scopes or self.scopes),
            topics=topics,
            unitops=unitops,
            ttl_s=ttl_s,
        )

    def bearer(self, scopes: Sequence[str] | None = None, **claims: Any) -> dict[str, str]:
        """The Authorization header carrying such a token."""
        return {"Authorization": f"Bearer {self(scopes, **claims)}"}
