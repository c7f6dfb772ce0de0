"""The errors of authentication and authorization (auth.py, jwks.py), as HTTP and frames answer them."""

from __future__ import annotations


class AuthError(Exception):
    """401: no credentials, or credentials that do not verify."""


class AuthUnavailable(AuthError):
    """503: the token cannot be checked now (the identity provider's signing keys cannot be fetched)."""


class Forbidden(Exception):
    """403: valid credentials without the right."""
