"""The client library's and the CLI's historian reads against the hub app (real FerretDB and RabbitMQ): the CLI
runs in its own thread and event loop, speaking HTTP to the app served by uvicorn on a free port."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from tests.hub.conftest import MINT
from tests.hub.test_historian import at, kiln  # noqa: F401  (the fixture)
from tests.hub.test_unitops import control  # noqa: F401  (the fixture)
from tests.support.platform import free_port
from tests.support.polling import eventually
from tributary_client.cli.root import app as cli_app
from tributary_client.errors import TributaryError
from tributary_client.hub import HubClient


async def test_client_reads(app: FastAPI, kiln: str) -> None:  # noqa: F811
    transport = httpx.ASGITransport(app=app)
    async with HubClient("http://hub", MINT(["unitops:read"]), transport=transport) as hub:
        current = {r["item"]: r["v"] for r in await hub.samples_current(kiln, ["temp", "idle"])}
        assert current == {"temp": 0.0, "idle": None}
        raw = [r["v"] async for r in hub.samples(kiln, items=["temp"], start=at(15), end=at(35), boundary="outside")]
        assert raw == [10.0, 20.0, 0.0]
        grid = [r async for r in hub.samples(kiln, "interpolated", items="valve", start=at(0), end=at(30), interval=15)]
        assert [r["values"]["valve"] for r in grid] == [0, 0, 100]
        plot = [r async for r in hub.samples(kiln, "plot", items="temp", start=at(0), end=at(40), intervals=1)]
        assert [p["v"] for p in plot[0]["points"]] == [0.0, 20.0]
        rows = hub.samples(kiln, "summary", items="temp", start=at(0), end=at(40), calc=["count", "tavg"])
        assert [(r["count"], r["tavg"]) async for r in rows] == [(3, 10.0)]
        wide = b"".join(
            [c async for c in hub.samples_export(kiln, "interpolated", "csv", start=at(0), end=at(10), interval="10s")]
        )
        assert wide.decode().splitlines()[0] == "t,temp,mode,valve,idle"
        with pytest.raises(TributaryError) as exc:
            [r async for r in hub.samples(kiln, "summary", start=at(0), end=at(40), calc="median")]
        assert exc.value.status == 422


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually(started, what="uvicorn serving", interval=0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def cli(url: str, *args: str) -> Any:
    token = MINT(["unitops:read"])
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, ["--hub", url, "--token", token, *args])
    return result


async def test_cli_reads(served: str, kiln: str, tmp_path: Path) -> None:  # noqa: F811
    r = await cli(served, "--json", "samples", "current", kiln, "--items", "temp,mode")
    assert r.exit_code == 0, r.output
    assert [orjson.loads(line)["v"] for line in r.stdout.splitlines()] == [0.0, "manual"]
    r = await cli(
        served, "samples", "summary", kiln, "--start", at(0), "--end", at(40), "--items", "valve", "--calc", "tavg"
    )
    assert r.exit_code == 0, r.output
    assert "25.0" in r.stdout
    out = tmp_path / "wide.csv"
    r = await cli(
        served,
        "samples",
        "interpolated",
        kiln,
        "--start",
        at(0),
        "--end",
        at(40),
        "--interval",
        "10s",
        "--format",
        "csv",
        "-o",
        str(out),
    )
    assert r.exit_code == 0, r.output
    table = list(csv.reader(io.StringIO(out.read_text())))
    assert table[0] == ["t", "temp", "mode", "valve", "idle"] and len(table) == 6
    assert "bytes" in r.stderr  # the progress of an export to a file
    r = await cli(
        served,
        "--json",
        "samples",
        "plot",
        kiln,
        "--start",
        at(0),
        "--end",
        at(40),
        "--intervals",
        "2",
        "--items",
        "temp",
    )
    assert [len(orjson.loads(line)["points"]) for line in r.stdout.splitlines()] == [2, 1]
    r = await cli(served, "samples", "raw", kiln, "--last", "1", "--items", "temp")
    assert r.exit_code == 0 and "0.0" in r.stdout
    r = await cli(served, "samples", "summary", kiln, "--start", at(40), "--end", at(0))
    assert r.exit_code != 0 and "end" in r.output
