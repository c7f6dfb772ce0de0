"""The wire side of a batch publish: the body split into events (a JSON array or JSON lines), and the 503
answering a batch the broker confirmed only in part."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse

from ..errors import HubError, Invalid, TooLarge, Unavailable
from .deps import parse_json


def split_batch(raw: bytes, kind: str, limit: int) -> list[Any]:
    """A JSON array, or NDJSON (one JSON value per non-empty line); each line's errors say which line."""
    if kind in ("application/json", "application/cloudevents-batch+json"):
        value = parse_json(raw)
        if not isinstance(value, list):
            raise Invalid(
                "a batch must be a JSON array (or NDJSON)", [{"loc": "/", "msg": "not an array"}], code="invalid_batch"
            )
        items = value
    else:
        lines = [(n, line) for n, line in enumerate(raw.split(b"\n"), start=1) if line.strip()]
        if len(lines) > limit:
            raise TooLarge(
                f"a batch holds at most {limit} events",
                [{"loc": "/", "msg": f"{len(lines)} lines"}],
                code="batch_too_large",
            )
        items = []
        for index, (n, line) in enumerate(lines):
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise HubError(
                    f"malformed JSON on line {n}: {exc}",
                    [{"loc": f"/{index}", "msg": f"line {n}: {exc}"}],
                    code="malformed_json",
                ) from exc
    if not items:
        raise Invalid(
            "the batch is empty", [{"loc": "/", "msg": "at least one event is required"}], code="invalid_batch"
        )
    if len(items) > limit:
        raise TooLarge(
            f"a batch holds at most {limit} events",
            [{"loc": "/", "msg": f"more than {limit} events"}],
            code="batch_too_large",
        )
    return items


def partially_confirmed(ids: list[str], failures: list[Unavailable | None]) -> JSONResponse:
    """503 with every id and which ones the broker confirmed: resending the batch with these ids is exactly-once
    in history (the recorder keeps one event per topic and id)."""
    details = [{"loc": f"/{i}", "msg": f"not confirmed: {f.message}"} for i, f in enumerate(failures) if f]
    body = {
        "error": {
            "code": "partially_confirmed",
            "message": f"the broker confirmed {failures.count(None)} of {len(ids)} events; "
            "resend the batch with these ids (confirmed ones are not recorded twice)",
            "details": details,
        },
        "ids": ids,
        "confirmed": [f is None for f in failures],
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
