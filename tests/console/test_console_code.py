"""The console's JavaScript: its JSDoc types checked by TypeScript (`tsc --checkJs --noEmit`, installed pinned by
`make console`, the same check as `make lint`), each module small; and the hub without the chart library (a dev
checkout before `make console`) still serves the console, telling it there is no chart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tributary_hub.api import console
from tributary_hub.settings import HubSettings

ROOT = Path(__file__).resolve().parents[2]
TSC = ROOT / ".local" / "tools" / "console" / "node_modules" / ".bin" / "tsc"
ASSETS = ROOT / "services" / "hub" / "src" / "tributary_hub" / "console"
MAX_LINES = 250


def tsc(project: Path) -> subprocess.CompletedProcess[str]:
    if not TSC.exists():
        pytest.fail(f"{TSC} is missing: run `make console` (TypeScript and uPlot from npm, pinned in the Makefile)")
    if not (project.parent / "vendor" / "uPlot.min.js").exists():
        pytest.fail("the console's vendor/ (uPlot) is missing: run `make console`")
    return subprocess.run([str(TSC), "-p", str(project)], capture_output=True, text=True, timeout=300)


def test_the_console_javascript_type_checks() -> None:
    done = tsc(ASSETS / "jsconfig.json")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_type_check_is_not_vacuous(tmp_path: Path) -> None:
    copy = tmp_path / "console"
    shutil.copytree(ASSETS, copy)
    ui = copy / "js" / "ui.js"
    ui.write_text(ui.read_text() + '\n/** @type {number} */\nexport const broken = "text";\n')
    done = tsc(copy / "jsconfig.json")
    assert done.returncode != 0 and "ui.js" in done.stdout and "TS2322" in done.stdout, done.stdout


def test_each_module_is_small_and_checked() -> None:
    modules = sorted((ASSETS / "js").glob("*.js"))
    assert len(modules) >= 10
    for module in modules:
        lines = module.read_text().count("\n")
        assert lines <= MAX_LINES, f"{module.name}: {lines} lines (at most {MAX_LINES}: split it)"
    assert (ASSETS / "jsconfig.json").read_text().count('"checkJs": true') == 1


def test_without_the_chart_library_the_console_is_served_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "CHART", tmp_path / "vendor" / "uPlot.min.js")
    app = FastAPI()
    console.mount(app, HubSettings(dev_mode=True, console_stream_url="wss://stream.example.com"))
    with TestClient(app) as client:
        assert client.get("/console/config.json").json() == {"stream_url": "wss://stream.example.com", "chart": False}
        assert client.get("/console/").status_code == 200
    monkeypatch.setattr(console, "CHART", ASSETS / "vendor" / "uPlot.min.js")
    app = FastAPI()
    console.mount(app, HubSettings(dev_mode=True))
    with TestClient(app) as client:
        assert client.get("/console/config.json").json() == {"stream_url": None, "chart": True}
        assert client.get("/console/vendor/uPlot.min.js").headers["content-type"].startswith("text/javascript")


def test_the_chart_library_is_built_in_not_committed() -> None:
    """Gitignored (copied in by `make console`), yet in the hub's wheel (hatch `artifacts`, which VCS ignores do
    not drop) and so in the image, whose build refuses to go on without it."""
    import fnmatch
    import tomllib

    chart = console.CHART.relative_to(ROOT / "services" / "hub").as_posix()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(console.CHART)], cwd=ROOT, check=False)
    assert ignored.returncode == 0, f"{chart} must be gitignored: it is built, never committed"
    project = tomllib.loads((ROOT / "services" / "hub" / "pyproject.toml").read_text())
    artifacts = project["tool"]["hatch"]["build"]["targets"]["wheel"]["artifacts"]
    assert any(fnmatch.fnmatch(chart, pattern) for pattern in artifacts), f"{chart} is not in the wheel"
    dockerfile = (ROOT / "deploy" / "docker" / "hub.Dockerfile").read_text()
    assert f"test -f services/hub/{chart}" in dockerfile
