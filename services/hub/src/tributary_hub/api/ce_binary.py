"""The CloudEvents HTTP binding's binary mode (publish one): attributes in `ce-` headers, the data as the body.

A request is in binary mode when it carries any `ce-` header and its Content-Type is not a structured
`application/cloudevents+json`. The headers become the same envelope a structured request sends, validated by
the same model (a problem with an attribute names its header: `/headers/ce-id`); `ce-time` is ignored as a
structured `time` is (the hub sets the time), so clients such as the CloudEvents SDK that always send it work.
The body is `data`: JSON (`Content-Type: application/json`, or none, JSON being the default); empty means null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from starlette.datastructures import Headers

from ..errors import Invalid, UnsupportedMedia

CE_PREFIX = "ce-"
# Each header is bounded before it is decoded; the model bounds each attribute further (id 256, source 1024).
CE_HEADER_MAX = 2048
CE_HEADERS_MAX = 16
IGNORED = frozenset({"time"})
DATA_TYPES = ("", "application/json")


def ce_headers(headers: Headers) -> list[tuple[str, str]]:
    """Every `ce-` header as (attribute name, raw value), in order."""
    return [(k[len(CE_PREFIX) :], v) for k, v in headers.items() if k.startswith(CE_PREFIX)]


def binary_envelope(
    attributes: list[tuple[str, str]], media: str, body: bytes, parse: Callable[[bytes, str], Any]
) -> dict[str, Any]:
    """The structured envelope of a binary-mode request; `parse` reads JSON (a 400 naming `/data` when not)."""
    if len(attributes) > CE_HEADERS_MAX:
        raise Invalid(
            f"a binary-mode event has at most {CE_HEADERS_MAX} ce- headers",
            [{"loc": "/headers", "msg": f"{len(attributes)} ce- headers"}],
            code="invalid_event",
        )
    too_long = [
        {"loc": f"/headers/ce-{name}", "msg": f"{len(value)} characters, more than {CE_HEADER_MAX}"}
        for name, value in attributes
        if len(value) > CE_HEADER_MAX
    ]
    if too_long:
        raise Invalid("a ce- header is too long; nothing was published", too_long, code="invalid_event")
    if media not in DATA_TYPES:
        raise UnsupportedMedia(
            f"unsupported Content-Type {media!r} for a binary-mode CloudEvent; the data must be application/json",
            [{"loc": "/headers/content-type", "msg": "expected application/json (or none)"}],
        )
    names = [name for name, _ in attributes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise Invalid(
            "a ce- header appears more than once",
            [{"loc": f"/headers/ce-{n}", "msg": "repeated"} for n in repeated],
            code="invalid_event",
        )
    if "data" in names:
        raise Invalid(
            "ce-data is not an attribute: in binary mode the body is the data",
            [{"loc": "/headers/ce-data", "msg": "not an attribute"}],
            code="invalid_event",
        )
    # Percent-decoded, as the binding requires.
    envelope: dict[str, Any] = {name: unquote(value) for name, value in attributes if name not in IGNORED}
    envelope["data"] = parse(body, "/data") if body.strip() else None
    return envelope
