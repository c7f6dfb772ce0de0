"""What identity providers really put in a token, mapped to Tributary scopes and ACL patterns.

`TRIBUTARY_CLAIM_MAP` is a JSON object: claim path -> claim value -> grant. A claim path is a top-level claim
(`scope`, `scp`, `roles`, `groups`) or a dotted path into nested objects (Keycloak's `realm_access.roles`,
`resource_access.<client>.roles`). A claim's value is a space-separated string (`scope`, Azure AD's `scp`) or a list
of strings (`roles`, `groups`, `scp` as some providers send it). A grant is `{"scopes": [...], "topics": [...],
"unitops": [...]}`, every part optional:

    {"roles": {"tributary-admin": {"scopes": ["admin"]}},
     "groups": {"3f2c...": {"scopes": ["events:read"], "topics": ["sensor-reading.plant1.#"]}},
     "scp": {"Events.Publish": {"scopes": ["events:publish"]}}}

Values of `scope` and `scp` that are Tributary scope names count as themselves, mapped or not. ACLs: the caller's
`topics` are the union of the patterns of the token's own `topics` claim and of every matched grant that has
`topics`; when none of them has any, topics are unrestricted (the rule of a token without a `topics` claim). The
same for `unitops`. Bad configuration is refused at start-up (`load_settings`), never at the first request.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel, field_validator

from .names import InvalidName, validate_pattern

SCOPES = (
    "topics:read",
    "topics:write",
    "events:publish",
    "events:read",
    "unitops:read",
    "unitops:write",
    "admin",
)
# Claims read as space-separated strings when they are strings (OAuth 2.0 `scope`, Azure AD `scp`).
SPACE_SEPARATED = ("scope", "scp")
CLAIM_PATH_RE = re.compile(r"^[A-Za-z0-9_:-]{1,64}(\.[A-Za-z0-9_:-]{1,64}){0,3}$")
MAX_CLAIM_VALUES = 1000  # values of one claim read from a token (Azure AD sends at most 200 groups)
MAX_VALUE_CHARS = 256
MAX_MAPPED_VALUES = 1000  # entries of the whole map
UNITOP_GLOB_RE = re.compile(r"^[A-Za-z0-9_*?\[\]!-]{1,128}$")
UNITOP_GLOB_RULE = "a unitop pattern is 1-128 characters of letters, digits, _ - and the globs * ? [ ] !"


class ClaimError(ValueError):
    """A claim the map reads has a shape no provider sends (not a string nor a list of strings)."""


def _scope(value: str) -> str:
    if value not in SCOPES:
        raise ValueError(f"unknown scope {value[:64]!r}; one of {list(SCOPES)}")
    return value


def _topic_pattern(value: str) -> str:
    try:
        return validate_pattern(value)
    except InvalidName as exc:
        raise ValueError(str(exc)) from exc


def _unitop_glob(value: str) -> str:
    if not UNITOP_GLOB_RE.fullmatch(value):
        raise ValueError(UNITOP_GLOB_RULE)
    return value


class Grant(BaseModel):
    """What one claim value grants."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scopes: list[Annotated[str, AfterValidator(_scope)]] = Field(default_factory=list, max_length=len(SCOPES))
    topics: list[Annotated[str, AfterValidator(_topic_pattern)]] | None = Field(default=None, max_length=100)
    unitops: list[Annotated[str, AfterValidator(_unitop_glob)]] | None = Field(default=None, max_length=100)


class ClaimMap(RootModel[dict[str, dict[str, Grant]]]):
    root: dict[str, dict[str, Grant]] = Field(default_factory=dict)

    @field_validator("root")
    @classmethod
    def _bounded(cls, v: dict[str, dict[str, Grant]]) -> dict[str, dict[str, Grant]]:
        for path, values in v.items():
            if not CLAIM_PATH_RE.fullmatch(path):
                raise ValueError(f"claim path {path[:80]!r}: a claim name or dotted path of at most 4 names")
            for value in values:
                if not 1 <= len(value) <= MAX_VALUE_CHARS:
                    raise ValueError(f"claim path {path!r}: a claim value is 1-{MAX_VALUE_CHARS} characters")
        if sum(len(values) for values in v.values()) > MAX_MAPPED_VALUES:
            raise ValueError(f"at most {MAX_MAPPED_VALUES} mapped claim values")
        return v


def claim_values(claims: dict[str, Any], path: str) -> list[str]:
    """The strings of the claim at `path` (absent: none); `ClaimError` for a shape no provider sends."""
    node: Any = claims
    for name in path.split("."):
        if not isinstance(node, dict) or name not in node:
            return []
        node = node[name]
    if node is None:
        return []
    if isinstance(node, str):
        values = node.split() if path in SPACE_SEPARATED else [node]
    elif isinstance(node, list) and all(isinstance(v, str) for v in node):
        values = node
    else:
        raise ClaimError(f"{path!r} must be a string or a list of strings")
    if len(values) > MAX_CLAIM_VALUES:
        raise ClaimError(f"{path!r} has more than {MAX_CLAIM_VALUES} values")
    return values


def _union(acl: list[str] | None, more: list[str] | None) -> list[str] | None:
    if more is None:
        return acl
    return [*(acl or []), *(p for p in more if p not in (acl or []))]


def grants(
    claims: dict[str, Any],
    claim_map: ClaimMap | None,
    topics: list[str] | None,
    unitops: list[str] | None,
) -> tuple[frozenset[str], list[str] | None, list[str] | None]:
    """Scopes and ACL patterns from the token's claims: its own scope names, its `topics`/`unitops` claims (given),
    and what the map grants for each claim value it names."""
    scopes = {v for path in SPACE_SEPARATED for v in claim_values(claims, path) if v in SCOPES}
    for path, by_value in (claim_map.root if claim_map is not None else {}).items():
        for value in claim_values(claims, path):
            grant = by_value.get(value)
            if grant is not None:
                scopes.update(grant.scopes)
                topics = _union(topics, grant.topics)
                unitops = _union(unitops, grant.unitops)
    return frozenset(scopes), topics, unitops
