"""Connector credentials by reference: params hold `{"secret": "NAME"}`, never the credential itself.

A connector marks a params field secret (the ingest SDK's `Secret` type); the source's announced JSON Schema then
carries `SECRET_MARKER: true` at that field (for a map secret only under some keys, such as HTTP headers, the
marked schema sits under `patternProperties`). Everything else is driven by that marker, not by field names: ingest
resolves references at marked fields before the connector sees its params, the hub refuses literal values there
(so credentials are neither stored nor sent on the broker) and masks whatever literal was stored before.
A subscription's `sid` hashes the params in canonical form, which keeps references as given: never a value.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

# The JSON Schema keyword a connector's params schema carries at every secret field.
SECRET_MARKER = "x-tributary-secret"
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# `TRIBUTARY_SECRET_<NAME>`: NAME upper-cased, `.` and `-` as `_`.
SECRET_ENV_PREFIX = "TRIBUTARY_SECRET_"
MASK = "***"
# Schemas come from other processes: bound how deep a walk follows them.
_MAX_DEPTH = 32
_MAX_PATTERN = 1024

REFERENCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "SecretReference",
    "properties": {"secret": {"type": "string", "pattern": SECRET_NAME_RE.pattern}},
    "required": ["secret"],
    "additionalProperties": False,
}

# The schema of a secret field: a reference (what the hub accepts) or a literal string (which the hub refuses
# with a message that says how to reference it, rather than a bare type error that would echo the value).
SECRET_FIELD_SCHEMA: dict[str, Any] = {
    "anyOf": [REFERENCE_SCHEMA, {"type": "string"}],
    SECRET_MARKER: True,
    "writeOnly": True,
    "description": 'A credential: give {"secret": "NAME"}, resolved by ingest from TRIBUTARY_SECRETS_DIR/NAME '
    "or TRIBUTARY_SECRET_<NAME>; literal values are refused",
}

# Header names that carry credentials: Authorization, Proxy-Authorization, Cookie, and any name containing key,
# token, secret, auth, password or session, in any case. Written for JSON Schema's regex dialect (ECMA 262, no
# inline flags: each letter a class) so that the hub's validator and Python read it alike; unanchored: "contains".
CREDENTIAL_WORDS = ("auth", "cookie", "key", "password", "secret", "session", "token")
CREDENTIAL_NAME_PATTERN = "|".join("".join(f"[{c.upper()}{c}]" for c in word) for word in CREDENTIAL_WORDS)

# A map of header values (or any name -> value map of that kind): a literal string or a reference, except under a
# credential-bearing name, where the value is a secret field (a literal there is refused by the hub).
HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "patternProperties": {CREDENTIAL_NAME_PATTERN: SECRET_FIELD_SCHEMA},
    "additionalProperties": {"anyOf": [REFERENCE_SCHEMA, {"type": "string"}]},
}


def is_credential_name(name: str) -> bool:
    return re.search(CREDENTIAL_NAME_PATTERN, name) is not None


class SecretNameError(ValueError):
    pass


def check_secret_name(name: str) -> str:
    """`^[A-Za-z0-9_.-]{1,128}$`, and never `.`, `..` or `..x` (a directory, or Kubernetes' own `..data` entries)."""
    if not SECRET_NAME_RE.fullmatch(name) or name == "." or name.startswith(".."):
        raise SecretNameError(
            f"secret name {name[:140]!r} must be 1-128 of A-Z a-z 0-9 _ . - (not '.', not starting with '..')"
        )
    return name


def secret_env_var(name: str) -> str:
    return SECRET_ENV_PREFIX + check_secret_name(name).upper().replace(".", "_").replace("-", "_")


def reference_name(value: Any) -> str | None:
    """The name when `value` is a well-formed `{"secret": "NAME"}`, else None."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("secret"), str):
        try:
            return check_secret_name(value["secret"])
        except SecretNameError:
            return None
    return None


Path = tuple[str | int, ...]


def pointer(path: Path) -> str:
    """RFC 6901 JSON pointer of `path`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def secret_values(schema: Mapping[str, Any], value: Any) -> dict[Path, Any]:
    """Every value inside `value` at a location that `schema` marks secret, by path (keys and list indexes)."""
    found: dict[Path, Any] = {}
    for path, v in _walk(schema, schema, value, (), 0):
        found.setdefault(path, v)
    return found


def _walk(node: Any, root: Mapping[str, Any], value: Any, path: Path, depth: int) -> Iterator[tuple[Path, Any]]:
    if depth > _MAX_DEPTH or not isinstance(node, Mapping):
        return
    if node.get(SECRET_MARKER) is True:
        yield path, value
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for token in ref[2:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            target = target.get(token) if isinstance(target, Mapping) else None
        yield from _walk(target, root, value, path, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        branches = node.get(key)
        if isinstance(branches, list):
            for branch in branches:
                yield from _walk(branch, root, value, path, depth + 1)
    if isinstance(value, dict):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        patterns = node.get("patternProperties")
        for k, v in value.items():
            # As JSON Schema applies them: the named property and every matching pattern; else the rest's schema.
            subs = [props[k]] if isinstance(props, Mapping) and k in props else []
            if isinstance(patterns, Mapping):
                subs += [s for p, s in patterns.items() if pattern_matches(p, k)]
            for sub in subs or [extra]:
                yield from _walk(sub, root, v, (*path, k), depth + 1)
    elif isinstance(value, list):
        items = node.get("items")
        prefix = node.get("prefixItems")
        for i, v in enumerate(value):
            sub = prefix[i] if isinstance(prefix, list) and i < len(prefix) else items
            yield from _walk(sub, root, v, (*path, i), depth + 1)


def pattern_matches(pattern: Any, key: str) -> bool:
    """Whether `key` matches a `patternProperties` pattern (unanchored, as in JSON Schema). A pattern this side
    cannot read counts as matching: the key then falls under that pattern's schema (for secrets, the strict one)."""
    if not isinstance(pattern, str) or len(pattern) > _MAX_PATTERN:
        return True
    try:
        return re.search(pattern, key) is not None
    except re.error:
        return True


def literal_secrets(schema: Mapping[str, Any], params: Any) -> list[tuple[str, str]]:
    """`(JSON pointer, problem)` for each secret field of `params` that holds anything but a reference (or null).

    The problem never quotes the value: it is a credential.
    """
    problems = []
    for path, v in secret_values(schema, params).items():
        if v is None or reference_name(v) is not None:
            continue
        if isinstance(v, dict) and "secret" in v:
            msg = (
                'a secret reference is exactly {"secret": "NAME"}, NAME 1-128 of A-Z a-z 0-9 _ . - '
                "(not '.', not starting with '..')"
            )
        else:
            msg = (
                'is a secret field: give {"secret": "NAME"} and provide the value to ingest as the file NAME in '
                "TRIBUTARY_SECRETS_DIR or as TRIBUTARY_SECRET_<NAME>; credentials are never stored or sent in clear"
            )
        problems.append((pointer(path), msg))
    return problems


def mask_secrets(schema: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of `params` with every non-reference value of a secret field replaced by `MASK`."""
    found = {p: v for p, v in secret_values(schema, params).items() if v is not None and reference_name(v) is None}
    if not found:
        return params
    masked = copy.deepcopy(params)
    for path in found:
        if not path:
            continue  # the params object itself marked secret: not a shape any connector announces
        node: Any = masked
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = MASK
    return masked
