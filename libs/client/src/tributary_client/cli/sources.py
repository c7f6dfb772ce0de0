"""`tributary sources …`: the sources (connectors) ingest serves, and browsing what they can subscribe."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .context import Ctx
from .inputs import load_json
from .output import emit, out, print_table
from .runner import call_hub

sources_app = typer.Typer(help="Sources: the connectors ingest serves.", no_args_is_help=True)


def _sources_table(items: list[dict[str, Any]]) -> None:
    print_table(
        ("name", "instances"),
        [[s["name"], ", ".join(i["instance_id"] for i in s.get("instances", []))] for s in items],
    )


@sources_app.command("list")
def sources_list(ctx: typer.Context) -> None:
    """List the sources with the ingest instances serving them."""
    c: Ctx = ctx.obj
    emit(c, call_hub(c, lambda hub: hub.sources()), _sources_table)


@sources_app.command("browse")
def sources_browse(
    ctx: typer.Context,
    source: str,
    path: Annotated[str, typer.Argument(help="Where to list (empty: the top)")] = "",
    params: Annotated[str, typer.Option(help="Connection params: JSON literal, @file or path")] = "{}",
    limit: Annotated[int, typer.Option(help="At most this many items")] = 200,
) -> None:
    """List what SOURCE can subscribe under PATH (OPC UA nodes, MQTT topics seen, CSV files and columns)."""
    c: Ctx = ctx.obj

    def human(result: dict[str, Any]) -> None:
        print_table(
            ("name", "kind", "path", "children", "params"),
            [
                [
                    item["name"],
                    item["kind"],
                    item["path"],
                    "yes" if item["has_children"] else "",
                    json.dumps(item["params"]) if item.get("params") else "",
                ]
                for item in result["items"]
            ],
        )
        if result.get("note"):
            out.print(result["note"])
        if result.get("truncated"):
            out.print(f"(more than {limit}: raise --limit or browse deeper)")

    emit(c, call_hub(c, lambda hub: hub.browse(source, path, load_json(params), limit)), human)
