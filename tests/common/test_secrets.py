"""The secret-field marker drives refusal and masking generically, whatever the shape of a source's schema."""

from __future__ import annotations

from typing import Any

from tributary_common.secrets import (
    HEADERS_SCHEMA,
    MASK,
    SECRET_FIELD_SCHEMA,
    SECRET_MARKER,
    is_credential_name,
    literal_secrets,
    mask_secrets,
    secret_env_var,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "$defs": {"Auth": {"type": "object", "properties": {"user": {"type": "string"}, "password": SECRET_FIELD_SCHEMA}}},
    "properties": {
        "url": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": SECRET_FIELD_SCHEMA},
        "auth": {"anyOf": [{"$ref": "#/$defs/Auth"}, {"type": "null"}]},
        "keys": {"type": "array", "items": SECRET_FIELD_SCHEMA},
        "a~b/c": SECRET_FIELD_SCHEMA,
    },
}


def test_literals_in_secret_fields_are_found_with_their_pointer_and_never_quoted() -> None:
    params = {
        "url": "http://x",
        "headers": {"Authorization": "Bearer abc", "X-Ref": {"secret": "tok"}, "Bad": {"secret": ".."}},
        "auth": {"user": "u", "password": "pw-123"},
        "keys": [{"secret": "k1"}, "k2-literal"],
        "a~b/c": None,
    }
    problems = literal_secrets(SCHEMA, params)
    assert [loc for loc, _ in problems] == ["/headers/Authorization", "/headers/Bad", "/auth/password", "/keys/1"]
    assert all('{"secret": "NAME"}' in msg for _, msg in problems)
    assert not any(v in msg for _, msg in problems for v in ("Bearer abc", "pw-123", "k2-literal"))
    assert literal_secrets(SCHEMA, {"url": "http://x", "auth": None, "a~b/c": 5}) == [("/a~0b~1c", problems[0][1])]


def test_masking_replaces_literals_only_and_copies() -> None:
    params: dict[str, Any] = {"headers": {"A": "lit", "B": {"secret": "b"}}, "auth": {"user": "u", "password": "pw"}}
    masked = mask_secrets(SCHEMA, params)
    assert masked == {"headers": {"A": MASK, "B": {"secret": "b"}}, "auth": {"user": "u", "password": MASK}}
    assert params["headers"]["A"] == "lit", "the input is left alone"
    clean = {"headers": {"B": {"secret": "b"}}}
    assert mask_secrets(SCHEMA, clean) is clean


def test_hostile_schemas_end() -> None:
    loop: dict[str, Any] = {"$defs": {"A": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"}
    assert literal_secrets(loop, {"x": "y"}) == []
    deep: dict[str, Any] = {SECRET_MARKER: True}
    value: Any = "literal"
    for _ in range(200):
        deep = {"type": "array", "items": deep}
        value = [value]
    assert literal_secrets(deep, value) == []  # deeper than any connector's params: not walked, not crashed


def test_environment_names() -> None:
    assert secret_env_var("api-key.v2") == "TRIBUTARY_SECRET_API_KEY_V2"


def test_header_maps_are_secret_only_under_credential_names() -> None:
    schema = {"type": "object", "properties": {"headers": HEADERS_SCHEMA}}
    params = {
        "headers": {
            "Accept": "application/json",
            "authorization": "Bearer x",
            "X-Api-Key": "k",
            "X-Signature": {"secret": "sig"},
            "Cookie": {"secret": "c"},
        }
    }
    assert [loc for loc, _ in literal_secrets(schema, params)] == ["/headers/authorization", "/headers/X-Api-Key"]
    assert mask_secrets(schema, params)["headers"] == {**params["headers"], "authorization": MASK, "X-Api-Key": MASK}
    for name in ("Authorization", "Proxy-Authorization", "COOKIE", "x-session-id", "X-Upstream-Token", "x-password"):
        assert is_credential_name(name), name
    for name in ("Accept", "Content-Type", "X-Tenant", "If-None-Match", "User-Agent"):
        assert not is_credential_name(name), name
    # A pattern this side cannot read (or an oversized one) counts as matching: the strict side.
    odd = {"type": "object", "patternProperties": {"(?<": SECRET_FIELD_SCHEMA, "x" * 2000: SECRET_FIELD_SCHEMA}}
    assert [loc for loc, _ in literal_secrets(odd, {"Accept": "a"})] == ["/Accept"]
