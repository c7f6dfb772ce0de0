"""The OpenAPI contract every HTTP service shares: the error responses (one declaration, the one body shape of
`http_errors`) and a document whose references all resolve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .http_errors import ErrorBody

Responses = dict[int | str, dict[str, Any]]

# What each status means on any route; a route may say more precisely what its own 404 or 409 is about.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed JSON",
    401: "No or invalid credentials",
    403: "Missing scope, or a name outside the credentials' ACL",
    404: "Not found",
    406: "None of the Accept types can be served",
    409: "Conflict with the current state",
    413: "The body or a part of it is over the limit",
    415: "Unsupported Content-Type",
    422: "The request does not match the API: every problem with its location (`loc`)",
    429: "Too many requests of this caller",
    503: "A dependency (broker, database, key set) is unavailable; retry after `Retry-After` seconds",
}

# Every authenticated route can answer these: bad credentials, missing scope, a parameter that does not match,
# and a dependency being away (the key set while checking a token, the database).
AUTHENTICATED = (401, 403, 422, 503)
# A route that reads a JSON body itself adds these.
JSON_BODY = (400, 413, 415, 422)


def error_responses(*codes: int | tuple[int, str]) -> Responses:
    """OpenAPI `responses` for these error statuses, each with the shared error body; `(code, text)` describes a
    status in the route's own words."""
    out: Responses = {}
    for entry in codes:
        code, text = entry if isinstance(entry, tuple) else (entry, ERROR_DESCRIPTIONS[entry])
        out[code] = {"model": ErrorBody, "description": text}
    return out


def hoist_defs(doc: dict[str, Any]) -> dict[str, Any]:
    """Move the `$defs` of schemas embedded by hand (`openapi_extra`) into `components/schemas`: a `#/$defs/X`
    there would resolve against the document's root, where nothing is."""
    components: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})

    def visit(node: Any) -> Any:
        if isinstance(node, dict):
            defs = node.pop("$defs", None)
            if isinstance(defs, dict):
                for name, schema in defs.items():
                    schema = visit(schema)
                    if components.setdefault(name, schema) != schema:
                        raise ValueError(f"two different schemas are both named {name!r} in the OpenAPI document")
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
            return {k: visit(v) for k, v in node.items()}
        if isinstance(node, list):
            return [visit(v) for v in node]
        return node

    doc["paths"] = visit(doc.get("paths", {}))
    doc["components"]["schemas"] = {name: visit(schema) for name, schema in components.items()}
    return doc


def install_openapi(app: FastAPI, extend: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve a document whose references resolve; `extend` adds what FastAPI cannot say (links, …)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            hoist_defs(doc)
            if extend is not None:
                extend(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
