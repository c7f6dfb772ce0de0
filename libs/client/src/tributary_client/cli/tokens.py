"""`tributary token`: development tokens signed with the platform's shared secret."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tributary_common.auth import SCOPES, mint_token
from tributary_common.settings import CommonSettings


def token(
    subject: Annotated[str, typer.Option("--sub", help="Token subject")] = "dev",
    scope: Annotated[list[str] | None, typer.Option(help=f"Scopes (repeat); default all: {' '.join(SCOPES)}")] = None,
    topics: Annotated[list[str] | None, typer.Option(help="Allowed routing-key patterns (repeat)")] = None,
    unitops: Annotated[list[str] | None, typer.Option(help="Allowed unitop name globs (repeat)")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds")] = 24 * 3600,
) -> None:
    """Print a development token signed with TRIBUTARY_JWT_SECRET (HS256)."""
    secret = CommonSettings().jwt_secret.get_secret_value()
    sys.stdout.write(
        mint_token(secret, subject=subject, scopes=scope or SCOPES, topics=topics, unitops=unitops, ttl_s=ttl) + "\n"
    )
