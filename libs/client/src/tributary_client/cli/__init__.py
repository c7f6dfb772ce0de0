"""`tributary`: the command line for people and scripts.

Human-friendly output by default, `--json` for scripts. Connection settings come from options or from
`TRIBUTARY_HUB_URL`, `TRIBUTARY_STREAM_URL` and `TRIBUTARY_TOKEN`.

An expected failure (platform unreachable, 401/403/404/409/422/5xx) is one line on stderr naming the cause and
what to do, the platform's violations each on its own line, and a distinct exit code (`errors.ExitCode`); the
traceback only with `--debug`.

Modules: `root` (the command tree and global options), one per resource (`topics`, `unitops`, `sources`,
`events`: publish, tail, history; `tokens`), `context` (the invocation's options), `failures` (what a failure
prints and its exit code), `inputs` (JSON and NDJSON given by the user), `output` (tables, JSON, frames).
"""

from .root import app, main

__all__ = ["app", "main"]
