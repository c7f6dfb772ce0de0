"""The OpenAPI documentation of the publish routes: their error responses, request bodies and examples."""

from __future__ import annotations

from typing import Any

from tributary_common.events import EventIn
from tributary_common.http_errors import ErrorBody

from ..publishing import CloudEventIn
from .access import ERRORS

PUBLISH_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    413: {"model": ErrorBody, "description": "Body, batch or the event's encoded envelope over the limit"},
    415: {"model": ErrorBody, "description": "Unsupported Content-Type"},
    422: {
        "model": ErrorBody,
        "description": "Invalid against the topic's schema: every violation with its JSON pointer",
        "content": {
            "application/json": {
                "example": {
                    "error": {
                        "code": "invalid_event",
                        "message": "the event is invalid against /topics/sensor-reading/schemas/1; "
                        "nothing was published",
                        "details": [{"loc": "/data/temperature", "msg": '"hot" is not of type "number"'}],
                    }
                }
            }
        },
    },
    503: {"model": ErrorBody, "description": "The broker did not confirm; retry with the same ids"},
}
BATCH_ERRORS: dict[int | str, dict[str, Any]] = {
    **PUBLISH_ERRORS,
    413: {"model": ErrorBody, "description": "Body, batch or one event's encoded envelope (`/<index>`) over the limit"},
    503: {
        "description": "Not every event was confirmed: `ids` (every event's id, in order) and `confirmed` (per "
        "event); resend the batch with these ids, history keeps each (topic, id) once",
        "content": {
            "application/json": {
                "example": {
                    "error": {
                        "code": "partially_confirmed",
                        "message": "the broker confirmed 1 of 2 events; resend the batch with these ids",
                        "details": [{"loc": "/1", "msg": "not confirmed: ..."}],
                    },
                    "ids": ["reading-0001", "reading-0002"],
                    "confirmed": [True, False],
                }
            }
        },
    },
}

EVENT_EXAMPLE = {"data": {"temperature": 21.5, "unit": "C"}, "subject": "plant1.line3"}
ENVELOPE_EXAMPLE = {
    "specversion": "1.0",
    "id": "reading-0001",
    "source": "/plant1/gateway",
    "type": "sensor-reading",
    "subject": "plant1.line3",
    "data": {"temperature": 21.5},
}

ONE_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": EventIn.model_json_schema(),
            "examples": {"event": {"value": EVENT_EXAMPLE}},
        },
        "application/cloudevents+json": {
            "schema": CloudEventIn.model_json_schema(),
            "examples": {"envelope": {"value": ENVELOPE_EXAMPLE}},
        },
    },
}

BATCH_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "array", "items": EventIn.model_json_schema()},
            "examples": {"batch": {"value": [EVENT_EXAMPLE, {"data": {"temperature": 22}}]}},
        },
        "application/cloudevents-batch+json": {
            "schema": {"type": "array", "items": CloudEventIn.model_json_schema()},
            "examples": {"envelopes": {"value": [ENVELOPE_EXAMPLE]}},
        },
        # JSON lines: described as the array of the lines (OpenAPI 3.2's `itemSchema`), one JSON value each.
        **{
            media: {
                "schema": {"type": "array", "items": EventIn.model_json_schema()},
                "examples": {"lines": {"value": [{"data": {"temperature": 21.5}}, EVENT_EXAMPLE]}},
            }
            for media in ("application/x-ndjson", "application/jsonl")
        },
    },
}
