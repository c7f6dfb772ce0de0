"""What the hub's OpenAPI document says beyond the routes themselves: the error responses each kind of route can
give (declared once, in libs/common) and the links from the operation that creates a resource to those that use
it, so that generated clients and stateful testers can follow them."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from tributary_common.openapi import AUTHENTICATED, JSON_BODY, Responses, error_responses

__all__ = ["JSON_BODY", "add_links", "errors", "operation_id"]


def errors(*codes: int | tuple[int, str]) -> Responses:
    """The responses of an authenticated route: 401, 403, 422 and 503, and `codes`."""
    return error_responses(*AUTHENTICATED, *codes)


def operation_id(route: APIRoute) -> str:
    """The handler's name: stable, readable operation ids (`get_topic`) for links and generated clients."""
    return route.name


TOPIC = {"topic": "$response.body#/name"}
# operation id of the creating route, its success status -> link name -> (target operation id, parameters)
LINKS: dict[tuple[str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("create_topic", "201"): {
        "GetTopic": ("get_topic", TOPIC),
        "PatchTopic": ("patch_topic", TOPIC),
        "PutSchema": ("put_schema", TOPIC),
        "ListSchemas": ("list_schemas", TOPIC),
        "GetSchema": ("get_schema", {**TOPIC, "version": "$response.body#/version"}),
        "PublishOne": ("publish_one", TOPIC),
        "PublishBatch": ("publish_batch", TOPIC),
        "History": ("history", TOPIC),
        "Latest": ("latest", TOPIC),
        "DeleteTopic": ("delete_topic", TOPIC),
    },
    ("put_schema", "200"): {
        "GetSchema": ("get_schema", {**TOPIC, "version": "$response.body#/version"}),
    },
    ("publish_one", "202"): {
        "History": ("history", {"topic": "$request.path.topic"}),
    },
    ("create_unitop", "201"): {
        name: (op, {"name": "$response.body#/name"})
        for name, op in (
            ("GetUnitop", "get_unitop"),
            ("PutUnitop", "put_unitop"),
            ("Samples", "unitop_samples"),
            ("DeleteUnitop", "delete_unitop"),
        )
    },
    ("create_key", "201"): {"DeleteKey": ("delete_key", {"key_id": "$response.body#/id"})},
}


def add_links(doc: dict[str, Any]) -> None:
    operations = {
        op.get("operationId"): op
        for item in doc.get("paths", {}).values()
        for op in item.values()
        if isinstance(op, dict)
    }
    for (source, status), links in LINKS.items():
        response = operations[source]["responses"][status]
        response["links"] = {
            name: {"operationId": target, "parameters": params}
            for name, (target, params) in links.items()
            if target in operations
        }


def documented(scope: str, responses: Responses, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What every route's decorator states besides its path and model: the error responses it can give and the
    scope it requires (`x-required-scope`), plus any other OpenAPI extras (`extra`)."""
    return {"responses": responses, "openapi_extra": {"x-required-scope": scope, **(extra or {})}}
