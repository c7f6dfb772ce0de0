"""The canonical form of subscription params (what a sid hashes), driven by the announced JSON Schema alone."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tributary_common.canonical import UnrepresentableParams, canonical_params, canonical_sid
from tributary_common.secrets import HEADERS_SCHEMA, SECRET_FIELD_SCHEMA


class Inner(BaseModel):
    gain: float = 1.0
    taps: int = 4


class Params(BaseModel):
    tag: str
    port: int = 1883
    scale: float = 1.0
    either: int | float = 0
    limits: list[float] = [0.0, 100.0]
    inner: Inner = Inner()
    maybe: Inner | None = None


SCHEMA = Params.model_json_schema()


def test_numbers_follow_the_schema_type_and_defaults_are_left_out() -> None:
    assert canonical_params(SCHEMA, {"tag": "a", "port": 1883.0, "scale": 1}) == {"tag": "a"}
    assert canonical_params(SCHEMA, {"tag": "a", "port": 1884.0, "scale": 2, "limits": [0, 50]}) == {
        "tag": "a",
        "port": 1884,
        "scale": 2.0,
        "limits": [0.0, 50.0],
    }
    out = canonical_params(SCHEMA, {"tag": "a", "port": 10.0, "scale": 3})
    assert type(out["port"]) is int and type(out["scale"]) is float
    # Nested models ($ref) and optional ones (anyOf with null) are walked; their defaults compare canonically.
    assert canonical_params(SCHEMA, {"tag": "a", "inner": {"gain": 1, "taps": 4.0}, "maybe": None}) == {"tag": "a"}
    assert canonical_params(SCHEMA, {"tag": "a", "maybe": {"gain": 2, "taps": 4.0}}) == {
        "tag": "a",
        "maybe": {"gain": 2.0},
    }
    # Both int and float allowed: kept as given (the connector can tell them apart); -0.0 is 0.0.
    assert canonical_params(SCHEMA, {"tag": "a", "either": 1.0})["either"] == 1.0
    assert type(canonical_params(SCHEMA, {"tag": "a", "either": 1})["either"]) is int
    assert canonical_sid("s", SCHEMA, {"tag": "a", "scale": -0.0}) == canonical_sid(
        "s", SCHEMA, {"tag": "a", "scale": 0}
    )


def test_variants_are_one_sid_and_the_model_reads_them_alike() -> None:
    variants: list[dict[str, Any]] = [
        {"tag": "a", "scale": 2},
        {"tag": "a", "scale": 2.0, "port": 1883, "limits": [0, 100], "inner": {}},
        {"inner": {"taps": 4}, "port": 1883.0, "scale": 2.0, "tag": "a"},
    ]
    assert len({canonical_sid("s", SCHEMA, v) for v in variants}) == 1
    for v in variants:
        assert Params.model_validate(canonical_params(SCHEMA, v)) == Params.model_validate(v)
    assert canonical_sid("s", SCHEMA, {"tag": "a"}) != canonical_sid("s", SCHEMA, {"tag": "b"})
    assert canonical_sid("s", SCHEMA, {"tag": "a"}) != canonical_sid("t", SCHEMA, {"tag": "a"})


def test_secret_references_and_header_values_are_kept_as_given() -> None:
    schema = {
        "type": "object",
        "properties": {"password": {"anyOf": [SECRET_FIELD_SCHEMA, {"type": "null"}], "default": None}},
        "additionalProperties": False,
    }
    assert canonical_params(schema, {"password": {"secret": "pw"}}) == {"password": {"secret": "pw"}}
    assert canonical_params(schema, {"password": None}) == {}
    headers = {"type": "object", "properties": {"headers": {**HEADERS_SCHEMA, "default": {}}}}
    given = {"headers": {"Accept": "application/json", "Authorization": {"secret": "tok"}}}
    assert canonical_params(headers, given) == given
    assert canonical_params(headers, {"headers": {}}) == {}


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"tag": "a", "port": 1e300}, "/port"),
        ({"tag": "a", "port": 2**64}, "/port"),
        ({"tag": "a", "scale": float("inf")}, "/scale"),
        ({"tag": "a", "limits": [1.0, float("nan")]}, "/limits/1"),
        ({"tag": "a", "extra": {"deep": [-(2**70)]}}, "/extra/deep/0"),
    ],
)
def test_numbers_no_store_can_hold_are_refused_with_their_place(params: dict[str, Any], loc: str) -> None:
    with pytest.raises(UnrepresentableParams) as caught:
        canonical_params(SCHEMA, params)
    assert caught.value.loc == loc


def test_hostile_schemas_end() -> None:
    loop: dict[str, Any] = {"$defs": {"A": {"$ref": "#/$defs/A"}}, "$ref": "#/$defs/A"}
    assert canonical_params(loop, {"x": 1.0}) == {"x": 1.0}
    deep: dict[str, Any] = {"type": "number"}
    value: Any = 1
    for _ in range(200):
        deep = {"type": "array", "items": deep}
        value = [value]
    assert canonical_params({"properties": {"v": deep}}, {"v": value}) == {"v": value}
    odd = {"properties": {"a": {"$ref": "http://elsewhere/schema"}, "b": {"$ref": "#/nowhere"}}}
    assert canonical_params(odd, {"a": 1, "b": 2.0}) == {"a": 1, "b": 2.0}
