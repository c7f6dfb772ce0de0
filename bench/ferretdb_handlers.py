"""FerretDB's SQLite handler against its PostgreSQL handler, on this project's own storage benches (issue 14: "the
handler chosen by measurement").

Starts, side by side, a fresh FerretDB on SQLite and a fresh FerretDB on a throwaway PostgreSQL cluster (Debian's
`postgresql`, default durability), each on a free loopback port, then runs each bench named by `--bench` once
against each (as a subprocess with `FERRETDB_PORT` set: every bench reaches the database through
`tests.support.platform`), alternating the handler that goes first per bench. Prints each run's output and one
table per bench: the rows of the bench's markdown table, SQLite's cell beside PostgreSQL's.
`.venv/bin/python bench/ferretdb_handlers.py --bench "history_events.py --events 200000"`; by default
`history_events.py` (200,000 events) and `recorder_rate.py` (about 4 minutes on a quiet machine).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.private_postgres import PrivatePostgres  # noqa: E402
from tests.support.ferretdb import PrivateFerretDB  # noqa: E402
from tests.support.platform import require_services  # noqa: E402

DEFAULT_BENCHES = [
    "history_events.py --events 200000 --old-events 2000 --recorder-events 20000 --busy-events 20000",
    "recorder_rate.py",
]


def table_rows(output: str) -> dict[str, list[str]]:
    """A markdown table's rows by their first cell (separator rows dropped)."""
    rows: dict[str, list[str]] = {}
    for line in output.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def run(bench: str, port: int) -> str:
    args = shlex.split(bench)
    env = {**os.environ, "FERRETDB_PORT": str(port)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / args[0]), *args[1:]], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"{bench} on port {port} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main(args: argparse.Namespace) -> None:
    require_services()
    postgres = PrivatePostgres()
    with tempfile.TemporaryDirectory(prefix="bench-ferretdb-") as tmp:
        sqlite = PrivateFerretDB(Path(tmp) / "sqlite")
        on_postgres = PrivateFerretDB(Path(tmp) / "pg", handler="postgresql", postgresql_url=postgres.url)
        try:
            postgres.start()
            sqlite.start()
            on_postgres.start()
            handlers = {"sqlite": sqlite.port, "postgresql": on_postgres.port}
            for n, bench in enumerate(args.bench or DEFAULT_BENCHES):
                order = list(handlers) if n % 2 == 0 else list(reversed(handlers))
                outputs = {}
                for handler in order:
                    print(f"== {bench} on FerretDB/{handler}", flush=True)
                    outputs[handler] = run(bench, handlers[handler])
                    print(outputs[handler], flush=True)
                tables = {h: table_rows(o) for h, o in outputs.items()}
                if not tables["sqlite"]:
                    continue  # a bench that prints no markdown table: its two outputs above say it all
                print(f"\n### {bench}\n\n| row | sqlite | postgresql |\n|---|---|---|")
                for key, cells in tables["sqlite"].items():
                    other = tables["postgresql"].get(key, [])
                    print(f"| {key} | {' / '.join(cells)} | {' / '.join(other)} |")
                print(flush=True)
        finally:
            on_postgres.stop()
            sqlite.stop()
            postgres.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", action="append", help="a bench under bench/ with its arguments (repeatable)")
    main(parser.parse_args())
