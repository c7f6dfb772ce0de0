"""The local platform's embedded FerretDB (`deploy/local/ferretdb`): SQLite by default, PostgreSQL when asked
(`bench/ferretdb_handlers.py` compares the two), and a clear refusal of anything else."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.ferretdb import BINARY, PrivateFerretDB
from tests.support.platform import free_port


@pytest.fixture
def binary() -> Path:
    if not BINARY.exists():
        pytest.fail(f"{BINARY} missing: `make services` builds it")
    return BINARY


@pytest.mark.parametrize("handler", ["mysql", "", "SQLITE", "sqlite; rm -rf /"])
def test_an_unknown_handler_is_refused_by_name(binary: Path, tmp_path: Path, handler: str) -> None:
    done = subprocess.run(
        [str(binary), "-listen", f"127.0.0.1:{free_port()}", "-data", str(tmp_path), "-handler", handler],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert f"unknown handler {handler!r}".replace("'", '"') in done.stderr, done.stderr


def test_the_default_handler_is_sqlite(binary: Path, tmp_path: Path) -> None:
    db = PrivateFerretDB(tmp_path / "data")
    db.start()
    try:
        assert "ferretdb (sqlite) listening" in db.tail()
    finally:
        db.stop()
