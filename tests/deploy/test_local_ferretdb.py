"""The local platform's embedded FerretDB (`deploy/local/ferretdb`): SQLite by default, PostgreSQL when asked
(`bench/ferretdb_handlers.py` compares the two), and a clear refusal of anything else; `services.sh` setting aside a
database file it cannot open."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from tests.support.ferretdb import BINARY, ROOT, PrivateFerretDB
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


def test_a_database_file_ferretdb_cannot_open_is_set_aside_and_it_starts(binary: Path) -> None:
    """FerretDB killed while making a database can leave a file without its `_ferretdb_collections` table, and then
    refuses to start at all. `services.sh up` moves such a file aside, says so, and starts; good files stay."""
    port = free_port()
    local = binary.parent.parent
    data = local / "data" / f"ferretdb-{port}"
    env = {**os.environ, "FERRETDB_PORT": str(port), "TRIBUTARY_LOCAL_DIR": str(local)}
    script = str(ROOT / "deploy/local/services.sh")
    data.mkdir(parents=True)
    try:
        with contextlib.closing(sqlite3.connect(data / "crashed.sqlite")) as db:
            db.execute("PRAGMA user_version = 1")  # a database file, without FerretDB's tables
            db.commit()
        refused = subprocess.run(
            [str(binary), "-listen", f"127.0.0.1:{port}", "-data", str(data)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode != 0 and "no such table: _ferretdb_collections" in refused.stderr + refused.stdout
        up = subprocess.run([script, "up", "ferretdb"], env=env, capture_output=True, text=True, timeout=60)
        assert up.returncode == 0, up.stderr
        assert "cannot open database file crashed.sqlite" in up.stderr
        assert (local / "data" / f"ferretdb-{port}-broken" / "crashed.sqlite").exists()
        assert not (data / "crashed.sqlite").exists()
        with contextlib.closing(MongoClient[dict[str, Any]](f"mongodb://127.0.0.1:{port}/")) as client:
            client["kept"]["things"].insert_one({"_id": 1})
        subprocess.run([script, "down", "ferretdb"], env=env, check=True, capture_output=True, timeout=60)
        again = subprocess.run([script, "up", "ferretdb"], env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "cannot open" not in again.stderr
        with contextlib.closing(MongoClient[dict[str, Any]](f"mongodb://127.0.0.1:{port}/")) as client:
            assert client["kept"]["things"].find_one({"_id": 1}) == {"_id": 1}
    finally:
        subprocess.run([script, "down", "ferretdb"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(local / "data" / f"ferretdb-{port}-broken", ignore_errors=True)
        (local / "log" / f"ferretdb-{port}.log").unlink(missing_ok=True)
