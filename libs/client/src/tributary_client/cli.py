"""`tributary`: the command line for people and scripts.

Human-friendly output by default, `--json` for scripts. Connection settings come from options or from
`TRIBUTARY_HUB_URL`, `TRIBUTARY_STREAM_URL` and `TRIBUTARY_TOKEN`.

An expected failure (platform unreachable, 401/403/404/409/422/5xx) is one line on stderr naming the cause and
what to do, the platform's violations each on its own line, and a distinct exit code (`errors.ExitCode`); the
traceback only with `--debug`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from websockets.exceptions import WebSocketException

from tributary_common.auth import SCOPES, mint_token
from tributary_common.settings import CommonSettings

from .errors import ExitCode, TributaryError
from .hub import EXPORT_TYPES, HubClient
from .stream import StreamClient

T = TypeVar("T")
EXIT_CODES = (
    "Exit codes: 0 ok; 1 unexpected error; 2 usage or bad local input; 3 hub or stream unreachable; "
    "4 not authenticated (401: no, invalid or expired token); 5 forbidden (403: missing scope or outside the ACL); "
    "6 not found (404); 7 request refused as invalid (400, 413, 415, 422); 8 conflict (409); "
    "9 platform unavailable (503, 5xx: retry); 130 interrupted. --debug shows the traceback of a failure."
)
app = typer.Typer(
    help="Tributary: validated events and timeseries, live and replayable.", no_args_is_help=True, epilog=EXIT_CODES
)
topics_app = typer.Typer(help="Topics and their JSON Schemas.", no_args_is_help=True)
unitops_app = typer.Typer(help="Unitops: named groups of subscriptions (assets).", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(unitops_app, name="unitops")
sources_app = typer.Typer(help="Sources: the connectors ingest serves.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
out = Console(soft_wrap=True)
err = Console(stderr=True)


class Ctx:
    def __init__(self, hub: str, stream: str, token: str | None, as_json: bool, debug: bool = False) -> None:
        self.hub = hub
        self.stream = stream
        self.token = token
        self.as_json = as_json
        self.debug = debug

    def client(self) -> HubClient:
        return HubClient(self.hub, self.token)


@app.callback()
def _options(
    ctx: typer.Context,
    hub: Annotated[str, typer.Option(envvar="TRIBUTARY_HUB_URL", help="Hub URL")] = "http://127.0.0.1:8000",
    stream: Annotated[str, typer.Option(envvar="TRIBUTARY_STREAM_URL", help="Stream URL")] = "ws://127.0.0.1:8001",
    token: Annotated[str | None, typer.Option(envvar="TRIBUTARY_TOKEN", help="Bearer token or API key")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of a failure")] = False,
) -> None:
    ctx.obj = _current[0] = Ctx(hub, stream, token, as_json, debug)


# The options of this invocation, for `_run` to explain a failure (one command per process).
_current: list[Ctx | None] = [None]


MAX_DETAILS = 50
MISSING_SCOPE = re.compile(r"missing scope '([^']+)'")


def _explain(exc: TributaryError, c: Ctx | None) -> list[str]:
    """What went wrong and what to do, first line alone; then the violations, one per line with its pointer."""
    where = f" ({exc.status} {exc.code})"
    if exc.status == 401:
        if "expired" in exc.message:
            head = f"the credentials have expired: {exc.message}; get a new token and set TRIBUTARY_TOKEN or --token"
        elif c is not None and not c.token:
            head = "not authenticated: no token given; set TRIBUTARY_TOKEN or --token"
        else:
            head = f"not authenticated: {exc.message}; check TRIBUTARY_TOKEN or --token"
    elif exc.status == 403:
        scope = MISSING_SCOPE.search(exc.message)
        head = (
            f"forbidden: the token lacks the scope {scope.group(1)!r} (or admin)"
            if scope
            else f"forbidden: {exc.message}"
        )
    else:
        head = exc.message
    lines = [f"error: {head}{where}"]
    lines += [f"  {d.get('loc', '')}: {d.get('msg', '')}" for d in exc.details[:MAX_DETAILS]]
    if len(exc.details) > MAX_DETAILS:
        lines.append(f"  ... and {len(exc.details) - MAX_DETAILS} more")
    return lines


def _unreachable(exc: BaseException, c: Ctx | None) -> str:
    url: object = c.hub if c else "the platform"
    if isinstance(exc, httpx.RequestError):
        with contextlib.suppress(RuntimeError):  # RuntimeError: no request attached
            url = exc.request.url
    elif c is not None:
        url = c.stream  # the stream client's websocket
    what = "no answer in time from" if isinstance(exc, httpx.TimeoutException | TimeoutError) else "cannot reach"
    return (
        f"error: {what} {url} ({type(exc).__name__}); is the platform running? `make up` starts a local one "
        "(or set --hub / TRIBUTARY_HUB_URL, --stream / TRIBUTARY_STREAM_URL)"
    )


def _fail(lines: list[str], code: ExitCode, exc: BaseException, c: Ctx | None) -> typer.Exit:
    if c is not None and c.debug:
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write("\n".join(lines) + "\n")  # plain text: messages may hold brackets rich would eat
    return typer.Exit(int(code))


def _run(coro: Awaitable[T]) -> T:
    c = _current[0]
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except TributaryError as exc:
        raise _fail(_explain(exc, c), exc.exit_code, exc, c) from exc
    except (httpx.TransportError, ConnectionError, TimeoutError, socket.gaierror, WebSocketException) as exc:
        raise _fail([_unreachable(exc, c)], ExitCode.UNREACHABLE, exc, c) from exc
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _emit(c: Ctx, value: Any, human: Callable[[Any], None] | None = None) -> None:
    if c.as_json or human is None:
        sys.stdout.write(json.dumps(value, indent=None if c.as_json else 2, default=str) + "\n")
    else:
        human(value)


def _load_json(value: str) -> Any:
    """A JSON literal, `@file.json`, or a path to an existing file."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    if not value.startswith("@") and not value.lstrip().startswith(("{", "[", '"')) and Path(value).is_file():
        text = Path(value).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/red] not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        raise typer.Exit(2) from exc


@app.command()
def token(
    subject: Annotated[str, typer.Option("--sub", help="Token subject")] = "dev",
    scope: Annotated[list[str] | None, typer.Option(help=f"Scopes (repeat); default all: {' '.join(SCOPES)}")] = None,
    topics: Annotated[list[str] | None, typer.Option(help="Allowed routing-key patterns (repeat)")] = None,
    unitops: Annotated[list[str] | None, typer.Option(help="Allowed unitop name globs (repeat)")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds")] = 24 * 3600,
) -> None:
    """Print a development token signed with TRIBUTARY_JWT_SECRET (HS256)."""
    secret = CommonSettings().jwt_secret.get_secret_value()
    sys.stdout.write(
        mint_token(secret, subject=subject, scopes=scope or SCOPES, topics=topics, unitops=unitops, ttl_s=ttl) + "\n"
    )


# ---- topics


def _topics_table(items: list[dict[str, Any]]) -> None:
    table = Table("name", "version", "compatibility", "retention", "description")
    for t in items:
        table.add_row(
            t["name"],
            str(t.get("version", "")),
            str(t.get("compatibility", "")),
            str(t.get("retention_days", "") or ""),
            str(t.get("description", "") or ""),
        )
    out.print(table)


@topics_app.command("list")
def topics_list(ctx: typer.Context) -> None:
    """List topics."""
    c: Ctx = ctx.obj

    async def go() -> list[dict[str, Any]]:
        async with c.client() as hub:
            return await hub.list_topics()

    _emit(c, _run(go()), _topics_table)


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

    async def go() -> dict[str, Any]:
        async with c.client() as hub:
            return await hub.create_topic(
                name,
                _load_json(schema),
                compatibility=compatibility,
                retention_days=retention_days,
                description=description,
            )

    _emit(
        c,
        _run(go()),
        lambda t: out.print(f"created topic [bold]{t['name']}[/bold] (schema version {t.get('version')})"),
    )


@topics_app.command("show")
def topics_show(ctx: typer.Context, name: str) -> None:
    """Show a topic and its current schema."""
    c: Ctx = ctx.obj

    async def go() -> dict[str, Any]:
        async with c.client() as hub:
            return await hub.get_topic(name)

    _emit(c, _run(go()), lambda t: out.print_json(data=t))


@topics_app.command("schema")
def topics_schema(
    ctx: typer.Context,
    name: str,
    version: Annotated[int | None, typer.Option(help="Show this version")] = None,
    set_: Annotated[str | None, typer.Option("--set", help="New schema: JSON literal, @file or path")] = None,
) -> None:
    """Show a schema version, or set a new one (checked against the topic's compatibility mode)."""
    c: Ctx = ctx.obj

    async def go() -> dict[str, Any]:
        async with c.client() as hub:
            if set_ is not None:
                return await hub.update_schema(name, _load_json(set_))
            v = version if version is not None else int((await hub.get_topic(name)).get("version", 1))
            return await hub.get_schema(name, v)

    _emit(c, _run(go()), lambda s: out.print_json(data=s))


@topics_app.command("delete")
def topics_delete(
    ctx: typer.Context, name: str, force: Annotated[bool, typer.Option(help="Even with events")] = False
) -> None:
    """Delete a topic (refused while it has events, unless --force)."""
    c: Ctx = ctx.obj

    async def go() -> None:
        async with c.client() as hub:
            await hub.delete_topic(name, force=force)

    _run(go())
    _emit(c, {"deleted": name}, lambda v: out.print(f"deleted topic [bold]{v['deleted']}[/bold]"))


# ---- publish


def _ndjson_lines(stream: Any) -> Iterator[dict[str, Any]]:
    for n, line in enumerate(stream, 1):
        if line.strip():
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                err.print(f"[red]error:[/red] line {n} is not valid JSON: {exc}")
                raise typer.Exit(2) from exc


@app.command()
def publish(
    ctx: typer.Context,
    topic: str,
    data: Annotated[str | None, typer.Argument(help="The event's data as JSON; omit to read NDJSON")] = None,
    subject: Annotated[str | None, typer.Option(help="Subject, e.g. plant1.line3")] = None,
    id_: Annotated[str | None, typer.Option("--id", help="Event id (idempotent retries)")] = None,
    file: Annotated[Path | None, typer.Option(help="NDJSON file of {data, subject?, id?} ('-' for stdin)")] = None,
    batch_size: Annotated[int, typer.Option(help="Events per batch request")] = 500,
) -> None:
    """Publish one event (DATA) or many (NDJSON from --file or stdin)."""
    c: Ctx = ctx.obj
    if data is not None:

        async def one() -> dict[str, Any]:
            async with c.client() as hub:
                return await hub.publish(topic, _load_json(data), subject=subject, id=id_)

        _emit(c, _run(one()), lambda r: out.print(f"published [bold]{r['id']}[/bold]"))
        return

    source = sys.stdin if file is None or str(file) == "-" else file.open()

    async def many() -> list[str]:
        ids: list[str] = []
        async with c.client() as hub:
            with Progress(
                TextColumn("publishing"),
                BarColumn(),
                TextColumn("{task.completed} events"),
                TimeElapsedColumn(),
                console=err,
                disable=c.as_json,
            ) as progress:
                task = progress.add_task("publish", total=None)
                chunk: list[dict[str, Any]] = []
                for event in _ndjson_lines(source):
                    if subject and "subject" not in event:
                        event["subject"] = subject
                    chunk.append(event)
                    if len(chunk) >= batch_size:
                        ids += await hub.publish_batch(topic, chunk)
                        progress.advance(task, len(chunk))
                        chunk = []
                if chunk:
                    ids += await hub.publish_batch(topic, chunk)
                    progress.advance(task, len(chunk))
        return ids

    ids = _run(many())
    _emit(c, {"ids": ids}, lambda r: out.print(f"published {len(r['ids'])} events"))


# ---- tail and history


def _print_frame(c: Ctx, frame: dict[str, Any]) -> None:
    if c.as_json:
        sys.stdout.write(orjson.dumps(frame).decode() + "\n")
        sys.stdout.flush()
        return
    kind = frame.get("type")
    if kind == "event":
        ev = frame["event"]
        key = ev["type"] + (f".{ev['subject']}" if ev.get("subject") else "")
        out.print(
            f"[dim]{ev['time']}[/dim] [cyan]{key}[/cyan] {orjson.dumps(ev.get('data')).decode()}  [dim]{ev['id']}[/dim]"
        )
    elif kind == "samples":
        label = frame.get("item") or frame.get("sid")
        for s in frame.get("samples", []):
            out.print(f"[dim]{s['t']}[/dim] [green]{frame.get('unitop', '')}/{label}[/green] {s['v']}")
    elif kind == "gap":
        out.print(f"[yellow]gap[/yellow]: {frame.get('reason', '')} (resume from {frame.get('last')})")


@app.command()
def tail(
    ctx: typer.Context,
    pattern: Annotated[
        str | None, typer.Argument(help="Events pattern over <topic>.<subject>, e.g. 'orders.#'")
    ] = None,
    unitop: Annotated[str | None, typer.Option(help="Follow a unitop's samples instead")] = None,
    item: Annotated[list[str] | None, typer.Option(help="Only these unitop items (repeat)")] = None,
    since: Annotated[str | None, typer.Option(help="Replay from a time (RFC 3339) or after an event id")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many frames")] = None,
) -> None:
    """Follow live events (or a unitop's samples), reconnecting and resuming without loss."""
    c: Ctx = ctx.obj
    if (pattern is None) == (unitop is None):
        err.print("[red]error:[/red] give an events PATTERN or --unitop NAME (one of them)")
        raise typer.Exit(2)
    client = StreamClient(c.stream, c.token)
    sub = client.unitop(unitop, items=item, since=since) if unitop else client.events(str(pattern), since=since)
    sub.first_connect_attempts = 3  # then "cannot reach" (once subscribed, it resumes after any drop)

    async def go() -> None:
        seen = 0
        async for frame in sub:
            _print_frame(c, frame)
            seen += 1
            if count is not None and seen >= count:
                return

    _run(go())


@app.command()
def history(
    ctx: typer.Context,
    topic: str,
    subject: Annotated[str | None, typer.Option(help="Subject pattern, e.g. 'plant1.#'")] = None,
    start: Annotated[str | None, typer.Option(help="From this time (RFC 3339)")] = None,
    end: Annotated[str | None, typer.Option(help="Until this time (RFC 3339)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | jsonl | ndjson | csv")] = "table",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to this file")] = None,
) -> None:
    """Export a topic's history (streamed; a progress bar counts what was written)."""
    c: Ctx = ctx.obj
    if fmt not in ("table", *EXPORT_TYPES):
        err.print(f"[red]error:[/red] --format must be one of table, {', '.join(EXPORT_TYPES)}")
        raise typer.Exit(2)

    async def table() -> None:
        async with c.client() as hub:
            rows = Table("time", "subject", "id", "data")
            async for ev in hub.history(topic, subject=subject, start=start, end=end):
                if c.as_json:
                    sys.stdout.write(ev.model_dump_json() + "\n")
                else:
                    rows.add_row(
                        ev.model_dump(mode="json")["time"], ev.subject or "", ev.id, orjson.dumps(ev.data).decode()
                    )
            if not c.as_json:
                out.print(rows)

    async def export() -> None:
        sink = output.open("wb") if output else sys.stdout.buffer
        try:
            async with c.client() as hub:
                with Progress(
                    TextColumn("exporting"),
                    TextColumn("{task.completed:,.0f} bytes"),
                    TimeElapsedColumn(),
                    console=err,
                    disable=output is None,
                ) as progress:
                    task = progress.add_task("export", total=None)
                    async for chunk in hub.export(topic, fmt, subject=subject, start=start, end=end):
                        sink.write(chunk)
                        progress.advance(task, len(chunk))
        finally:
            if output:
                sink.close()
            else:
                sink.flush()

    _run(table() if fmt == "table" else export())


# ---- unitops


@unitops_app.command("list")
def unitops_list(ctx: typer.Context, prefix: Annotated[str | None, typer.Option(help="Name prefix")] = None) -> None:
    """List unitops."""
    c: Ctx = ctx.obj

    async def go() -> list[dict[str, Any]]:
        async with c.client() as hub:
            return await hub.list_unitops(prefix)

    def human(items: list[dict[str, Any]]) -> None:
        table = Table("name", "items", "record", "meta")
        for u in items:
            table.add_row(
                u["name"], ", ".join(u.get("items", {})), str(u.get("record", False)), json.dumps(u.get("meta", {}))
            )
        out.print(table)

    _emit(c, _run(go()), human)


@unitops_app.command("show")
def unitops_show(ctx: typer.Context, name: str) -> None:
    """Show a unitop."""
    c: Ctx = ctx.obj

    async def go() -> dict[str, Any]:
        async with c.client() as hub:
            return await hub.get_unitop(name)

    _emit(c, _run(go()), lambda u: out.print_json(data=u))


@unitops_app.command("create")
def unitops_create(
    ctx: typer.Context, definition: Annotated[str, typer.Argument(help="JSON literal, @file or path")]
) -> None:
    """Create a unitop from its JSON definition `{name, items, meta?, record?}`."""
    c: Ctx = ctx.obj

    async def go() -> dict[str, Any]:
        async with c.client() as hub:
            return await hub.create_unitop(_load_json(definition))

    _emit(c, _run(go()), lambda u: out.print(f"created unitop [bold]{u['name']}[/bold]"))


@unitops_app.command("delete")
def unitops_delete(ctx: typer.Context, name: str) -> None:
    """Delete a unitop."""
    c: Ctx = ctx.obj

    async def go() -> None:
        async with c.client() as hub:
            await hub.delete_unitop(name)

    _run(go())
    _emit(c, {"deleted": name}, lambda v: out.print(f"deleted unitop [bold]{v['deleted']}[/bold]"))


# ---- sources


@sources_app.command("list")
def sources_list(ctx: typer.Context) -> None:
    """List the sources with the ingest instances serving them."""
    c: Ctx = ctx.obj

    async def go() -> list[dict[str, Any]]:
        async with c.client() as hub:
            return await hub.sources()

    def human(items: list[dict[str, Any]]) -> None:
        table = Table("name", "instances")
        for s in items:
            table.add_row(s["name"], ", ".join(i["instance_id"] for i in s.get("instances", [])))
        out.print(table)

    _emit(c, _run(go()), human)


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

    async def go() -> dict[str, Any]:
        async with c.client() as hub:
            return await hub.browse(source, path, _load_json(params), limit)

    def human(result: dict[str, Any]) -> None:
        table = Table("name", "kind", "path", "children", "params")
        for item in result["items"]:
            item_params = json.dumps(item["params"]) if item.get("params") else ""
            table.add_row(item["name"], item["kind"], item["path"], "yes" if item["has_children"] else "", item_params)
        out.print(table)
        if result.get("note"):
            out.print(result["note"])
        if result.get("truncated"):
            out.print(f"(more than {limit}: raise --limit or browse deeper)")

    _emit(c, _run(go()), human)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
