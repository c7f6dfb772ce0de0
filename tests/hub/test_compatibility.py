"""Compatibility modes between consecutive schema versions (the domain check, and through the API)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.hub.conftest import make_topic
from tributary_hub.compatibility import check

BASE: dict[str, Any] = {
    "type": "object",
    "required": ["temp"],
    "properties": {"temp": {"type": "number", "maximum": 100}, "unit": {"type": "string", "enum": ["C", "F"]}},
}


def with_(**changes: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {**BASE, "properties": {**BASE["properties"]}}
    for key, value in changes.items():
        if key in ("temp", "unit", "extra"):
            if value is None:
                schema["properties"].pop(key, None)
            else:
                schema["properties"][key] = value
        else:
            schema[key] = value
    return schema


CASES = [
    # (description, new schema, breaks backward?, breaks forward?)
    ("add optional property", with_(extra={"type": "string"}), False, False),
    ("add required property", with_(extra={"type": "string"}, required=["temp", "extra"]), True, False),
    ("drop a requirement", with_(required=[]), False, True),
    ("narrow a type", with_(temp={"type": "integer", "maximum": 100}), True, False),
    ("widen a type", with_(temp={"type": ["number", "string"], "maximum": 100}), False, True),
    ("remove an enum value", with_(unit={"type": "string", "enum": ["C"]}), True, False),
    ("add an enum value", with_(unit={"type": "string", "enum": ["C", "F", "K"]}), False, True),
    ("tighten a bound", with_(temp={"type": "number", "maximum": 50}), True, False),
    ("loosen a bound", with_(temp={"type": "number", "maximum": 500}), False, True),
    ("close the object", with_(additionalProperties=False), True, False),
    ("remove a property from a closed object", {**with_(unit=None), "additionalProperties": False}, True, False),
]


@pytest.mark.parametrize(("what", "new", "breaks_backward", "breaks_forward"), CASES)
def test_modes(what: str, new: dict[str, Any], breaks_backward: bool, breaks_forward: bool) -> None:
    assert check("none", BASE, new) == []
    assert bool(check("backward", BASE, new)) == breaks_backward, what
    assert bool(check("forward", BASE, new)) == breaks_forward, what
    assert bool(check("full", BASE, new)) == (breaks_backward or breaks_forward), what


def test_report_names_what_breaks() -> None:
    breaks = check("full", BASE, with_(extra={"type": "string"}, required=["temp", "extra"]))
    assert [(b.loc, b.msg) for b in breaks] == [("/required", "backward: property 'extra' is now required")]
    nested = check("backward", BASE, with_(temp={"type": "integer", "maximum": 10}))
    assert {b.loc for b in nested} == {"/properties/temp/type", "/properties/temp/maximum"}


def test_enum_values_are_compared_as_sets_and_named_up_to_ten() -> None:
    """Lost values by set membership (two enums of 8,000 values took a second of the event loop by list, each way),
    with Python's equality as before (True is 1) and objects by content; the message names ten and counts the rest."""
    old = {"enum": [f"a{i}" for i in range(8_000)] + [{"k": [1, 2]}, 1]}
    new = {"enum": [f"b{i}" for i in range(8_000)] + [{"k": [1, 2]}, True]}
    [lost] = check("backward", old, new)
    assert lost.loc == "/enum"
    assert lost.msg == f"backward: enum no longer allows {[f'a{i}' for i in range(10)]} and 7990 more"
    assert check("backward", {"enum": [{"b": 1, "a": [2]}]}, {"enum": [{"a": [2], "b": 1}]}) == []
    [changed] = check("backward", {"enum": [{"a": [2]}]}, {"enum": [{"a": [3]}]})
    assert "[{'a': [2]}]" in changed.msg


@pytest.mark.parametrize("mode", ["none", "backward", "forward", "full"])
async def test_modes_through_the_api(client: httpx.AsyncClient, mode: str) -> None:
    await make_topic(client, "compat", BASE, compatibility=mode)
    added_required = with_(extra={"type": "string"}, required=["temp", "extra"])
    r = await client.put("/topics/compat/schema", json={"schema": added_required})
    if mode in ("backward", "full"):
        assert r.status_code == 409, r.text
        err = r.json()["error"]
        assert err["code"] == "incompatible_schema"
        assert err["details"] == [{"loc": "/schema/required", "msg": "backward: property 'extra' is now required"}]
        assert (await client.get("/topics/compat")).json()["version"] == 1
    else:
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 2
    widened = with_(unit={"type": "string", "enum": ["C", "F", "K"]})
    r = await client.put("/topics/compat/schema", json={"schema": widened})
    assert (r.status_code == 409) == (mode in ("forward", "full")), r.text
