"""The command tree: global options (connection, output, debug) and every command group."""

from __future__ import annotations

from typing import Annotated

import typer

from .context import Ctx, current
from .events import history, publish, tail
from .failures import EXIT_CODES
from .samples import samples_app
from .sources import sources_app
from .tokens import token as token_command
from .topics import topics_app
from .unitops import unitops_app

app = typer.Typer(
    help="Tributary: validated events and timeseries, live and replayable.", no_args_is_help=True, epilog=EXIT_CODES
)
app.add_typer(topics_app, name="topics")
app.add_typer(unitops_app, name="unitops")
app.add_typer(sources_app, name="sources")
app.add_typer(samples_app, name="samples")


@app.callback()
def _options(
    ctx: typer.Context,
    hub: Annotated[str, typer.Option(envvar="TRIBUTARY_HUB_URL", help="Hub URL")] = "http://127.0.0.1:8000",
    stream: Annotated[str, typer.Option(envvar="TRIBUTARY_STREAM_URL", help="Stream URL")] = "ws://127.0.0.1:8001",
    token: Annotated[str | None, typer.Option(envvar="TRIBUTARY_TOKEN", help="Bearer token or API key")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of a failure")] = False,
) -> None:
    ctx.obj = current[0] = Ctx(hub, stream, token, as_json, debug)


for command in (token_command, publish, tail, history):
    app.command()(command)


def main() -> None:
    app()
