"""Credentials in a params model: the `Secret` and `Headers` field types, resolved through the framework's store
while the model is validated (part of the SDK: `tributary_ingest.sdk` exports them)."""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BeforeValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from tributary_common.secrets import HEADERS_SCHEMA, SECRET_FIELD_SCHEMA, SecretNameError, check_secret_name


class SecretResolver(Protocol):
    def resolve(self, name: str) -> str:
        """The value of secret `name`; raises `LookupError` (its message names the secret, never a value)."""


# The key of the validation context that carries the `SecretResolver`.
SECRETS_CONTEXT = "tributary.secrets"
SECRET_ERROR = "secret"  # the error type of a reference that cannot be resolved


class _Redacted(str):
    """A resolved credential: an ordinary `str`, except that repr() (of params, in logs and errors) hides it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


def _resolve_secret(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, dict):
        return value  # a literal: the hub refuses those, but what an older unitop holds is still read
    name = value.get("secret")
    if len(value) != 1 or not isinstance(name, str):
        raise PydanticCustomError("secret_reference", 'a secret reference is exactly {"secret": "NAME"}')
    try:
        check_secret_name(name)
    except SecretNameError as exc:
        raise PydanticCustomError(SECRET_ERROR, "{problem}", {"problem": str(exc)}) from None
    resolver = (info.context or {}).get(SECRETS_CONTEXT)
    if resolver is None:
        raise PydanticCustomError(SECRET_ERROR, "no secret store to resolve secret {name!r}", {"name": name})
    try:
        return resolver.resolve(name)
    except LookupError as exc:
        raise PydanticCustomError(SECRET_ERROR, "{problem}", {"problem": str(exc)}) from None
    except Exception as exc:  # noqa: BLE001 - a broken store refuses this subscription, not the whole demand
        problem = f"secret {name!r} cannot be resolved ({type(exc).__name__})"
        raise PydanticCustomError(SECRET_ERROR, "{problem}", {"problem": problem}) from None


Secret = Annotated[
    str,
    BeforeValidator(_resolve_secret),
    AfterValidator(_Redacted),
    WithJsonSchema(SECRET_FIELD_SCHEMA),
]
"""A credential in a params model: `{"secret": "NAME"}` on the wire, the resolved `str` in the connector."""

Headers = Annotated[dict[str, Secret], WithJsonSchema(HEADERS_SCHEMA)]
"""Name -> value (HTTP headers and the like): a literal string, or a `{"secret": "NAME"}` reference resolved like a
`Secret`. Under a credential-bearing name (Authorization, Proxy-Authorization, Cookie, or containing key, token,
secret, auth, password or session, any case) the hub accepts only a reference."""
