"""Hostile `opcua` params are refused with a clear message before a server sees them. Failed on the code before:
a deadband of Infinity or NaN (a demand's JSON may carry them) was sent to the server as the monitored item's
filter, and a percent deadband over 100 was passed on for the server to refuse or misread."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tributary_ingest.connectors.opcua import OpcuaSource
from tributary_ingest.sdk import BadParams

BASE = {"endpoint": "opc.tcp://127.0.0.1:4840/", "node": "ns=2;s=Tank.Level"}


def _reason(params: dict[str, Any]) -> str:
    try:
        OpcuaSource.parse_params({**BASE, **params})
    except BadParams as exc:
        return str(exc)
    raise AssertionError(f"{params} accepted")


@pytest.mark.parametrize("name", ["deadband", "sampling_interval_ms", "publishing_interval_ms", "timeout_s"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(name: str, value: float) -> None:
    assert f"params.{name}: Input should be a finite number" in _reason({name: value})


def test_a_percent_deadband_is_at_most_100() -> None:
    assert "a percent deadband is at most 100" in _reason({"deadband": 100.5, "deadband_type": "percent"})
    assert OpcuaSource.parse_params({**BASE, "deadband": 100, "deadband_type": "percent"}).deadband == 100
    assert OpcuaSource.parse_params({**BASE, "deadband": 5000.0}).deadband == 5000.0  # absolute: any finite size


def test_the_deadband_bound_is_in_the_announced_schema() -> None:
    """The hub checks a unitop's items against the announced schema: 1e400 (infinite once parsed) is a 422 there."""
    properties = OpcuaSource.params_model.model_json_schema()["properties"]
    assert properties["deadband"]["minimum"] == 0 and properties["deadband"]["maximum"] == 1e300
