"""`tributary unitops …`: unitops, named groups of subscriptions (assets)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from .context import Ctx
from .inputs import load_json
from .output import emit, emit_deleted, out, print_json, print_table
from .runner import call_hub

unitops_app = typer.Typer(help="Unitops: named groups of subscriptions (assets).", no_args_is_help=True)


def _unitops_table(items: list[dict[str, Any]]) -> None:
    print_table(
        ("name", "items", "record", "meta"),
        [
            [u["name"], ", ".join(u.get("items", {})), str(u.get("record", False)), json.dumps(u.get("meta", {}))]
            for u in items
        ],
    )


@unitops_app.command("list")
def unitops_list(ctx: typer.Context, prefix: Annotated[str | None, typer.Option(help="Name prefix")] = None) -> None:
    """List unitops."""
    c: Ctx = ctx.obj
    emit(c, call_hub(c, lambda hub: hub.list_unitops(prefix)), _unitops_table)


@unitops_app.command("show")
def unitops_show(ctx: typer.Context, name: str) -> None:
    """Show a unitop."""
    c: Ctx = ctx.obj
    emit(c, call_hub(c, lambda hub: hub.get_unitop(name)), print_json)


@unitops_app.command("create")
def unitops_create(
    ctx: typer.Context, definition: Annotated[str, typer.Argument(help="JSON literal, @file or path")]
) -> None:
    """Create a unitop from its JSON definition `{name, items, meta?, record?}`."""
    c: Ctx = ctx.obj
    created = call_hub(c, lambda hub: hub.create_unitop(load_json(definition)))
    emit(c, created, lambda u: out.print(f"created unitop [bold]{u['name']}[/bold]"))


@unitops_app.command("delete")
def unitops_delete(ctx: typer.Context, name: str) -> None:
    """Delete a unitop."""
    c: Ctx = ctx.obj
    call_hub(c, lambda hub: hub.delete_unitop(name))
    emit_deleted(c, "unitop", name)
