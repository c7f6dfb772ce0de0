"""Subscriptions and unitops: named groups of subscriptions, usually one physical asset."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

from .json_depth import nests_deeper_than
from .names import SEGMENT_RE, validate_unitop_name
from .sid import compute_sid

SOURCE_RE = r"^[a-z][a-z0-9_-]{0,62}$"
MetaValue = StrictStr | StrictInt | StrictFloat | StrictBool
MAX_ITEMS = 1000
MAX_PARAMS_DEPTH = 32  # as deep as canonical params are walked


class Subscription(BaseModel):
    """One resource in one source; its identity `sid` is derived from `{source, params}`."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(pattern=SOURCE_RE)
    params: dict[str, Any] = Field(default_factory=dict)
    # Historian reads hold its value between samples instead of interpolating; not part of the sid. Left out
    # of dumps when false, so that unitops without it look as they always did.
    stepped: StrictBool = Field(default=False, exclude_if=lambda v: not v)  # "yes", 1: refused, not read as true

    @field_validator("params")
    @classmethod
    def _params_depth(cls, v: dict[str, Any]) -> dict[str, Any]:
        # Checked before any validator or hash walks them: deeper than 255 levels, the schema validator raised
        # (a 500 at the hub); a connector's settings need nothing near this.
        if nests_deeper_than(v, MAX_PARAMS_DEPTH):
            raise ValueError(f"params nest deeper than {MAX_PARAMS_DEPTH} levels")
        return v

    @property
    def sid(self) -> str:
        return compute_sid(self.source, self.params)


class Unitop(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "pump-101",
                    "items": {
                        "flow": {"source": "simulator", "params": {"signal": "sine", "period_s": 60}},
                        "pressure": {"source": "simulator", "params": {"signal": "random_walk", "seed": 7}},
                    },
                    "meta": {"site": "plant1", "kind": "pump"},
                    "record": True,
                }
            ]
        },
    )

    name: str
    items: dict[str, Subscription] = Field(default_factory=dict, max_length=MAX_ITEMS)
    meta: dict[str, MetaValue] = Field(default_factory=dict, max_length=64)
    record: StrictBool = False  # "yes" or 1 refused: recording everything by a typo costs storage

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validate_unitop_name(v)

    @field_validator("items")
    @classmethod
    def _item_names(cls, v: dict[str, Subscription]) -> dict[str, Subscription]:
        for name in v:
            if not SEGMENT_RE.fullmatch(name) or len(name) > 128:
                raise ValueError(f"item name {name!r} must be 1-128 of A-Z a-z 0-9 _ -")
        return v

    @field_validator("meta")
    @classmethod
    def _meta_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if not SEGMENT_RE.fullmatch(key) or len(key) > 64:
                raise ValueError(f"meta key {key!r} must be 1-64 of A-Z a-z 0-9 _ -")
        return v
