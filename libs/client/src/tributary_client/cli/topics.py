"""`tributary topics …`: topics and their JSON Schemas."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..hub import HubClient
from .context import Ctx
from .inputs import load_json
from .output import emit, emit_deleted, out, print_json, print_table
from .runner import call_hub

topics_app = typer.Typer(help="Topics and their JSON Schemas.", no_args_is_help=True)


def _topics_table(items: list[dict[str, Any]]) -> None:
    print_table(
        ("name", "version", "compatibility", "retention", "description"),
        [
            [
                t["name"],
                str(t.get("version", "")),
                str(t.get("compatibility", "")),
                str(t.get("retention_days", "") or ""),
                str(t.get("description", "") or ""),
            ]
            for t in items
        ],
    )


@topics_app.command("list")
def topics_list(ctx: typer.Context) -> None:
    """List topics."""
    c: Ctx = ctx.obj
    emit(c, call_hub(c, lambda hub: hub.list_topics()), _topics_table)


@topics_app.command("create")
def topics_create(
    ctx: typer.Context,
    name: str,
    schema: Annotated[str, typer.Option(help="JSON Schema: a JSON literal, @file or a file path")],
    compatibility: Annotated[str | None, typer.Option(help="none | backward | forward | full")] = None,
    retention_days: Annotated[float | None, typer.Option(help="Keep events this many days")] = None,
    description: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a topic with its first schema version."""
    c: Ctx = ctx.obj
    created = call_hub(
        c,
        lambda hub: hub.create_topic(
            name, load_json(schema), compatibility=compatibility, retention_days=retention_days, description=description
        ),
    )
    emit(c, created, lambda t: out.print(f"created topic [bold]{t['name']}[/bold] (schema version {t.get('version')})"))


@topics_app.command("show")
def topics_show(ctx: typer.Context, name: str) -> None:
    """Show a topic and its current schema."""
    c: Ctx = ctx.obj
    emit(c, call_hub(c, lambda hub: hub.get_topic(name)), print_json)


@topics_app.command("schema")
def topics_schema(
    ctx: typer.Context,
    name: str,
    version: Annotated[int | None, typer.Option(help="Show this version")] = None,
    set_: Annotated[str | None, typer.Option("--set", help="New schema: JSON literal, @file or path")] = None,
) -> None:
    """Show a schema version, or set a new one (checked against the topic's compatibility mode)."""
    c: Ctx = ctx.obj

    async def schema(hub: HubClient) -> dict[str, Any]:
        if set_ is not None:
            return await hub.update_schema(name, load_json(set_))
        v = version if version is not None else int((await hub.get_topic(name)).get("version", 1))
        return await hub.get_schema(name, v)

    emit(c, call_hub(c, schema), print_json)


@topics_app.command("delete")
def topics_delete(
    ctx: typer.Context, name: str, force: Annotated[bool, typer.Option(help="Even with events")] = False
) -> None:
    """Delete a topic (refused while it has events, unless --force)."""
    c: Ctx = ctx.obj
    call_hub(c, lambda hub: hub.delete_topic(name, force=force))
    emit_deleted(c, "topic", name)
