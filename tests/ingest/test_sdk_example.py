"""The README's example connector is a real file: loaded here, run through the framework, and quoted verbatim."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_ingest.registry import RegistryError, load_sources
from tributary_ingest.sdk import BadParams

INGEST = Path(__file__).resolve().parents[2] / "services" / "ingest"
EXAMPLE = INGEST / "examples" / "diskfree.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("diskfree", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["diskfree"] = module
    spec.loader.exec_module(module)
    return module


def test_readme_quotes_the_example_verbatim() -> None:
    readme = (INGEST / "README.md").read_text()
    assert f"```python\n{EXAMPLE.read_text()}```" in readme


async def test_example_connector_runs_in_the_framework(
    tmp_path: Path, amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    source = load_example().DiskFreeSource
    with pytest.raises(BadParams, match=r"params.path: Value error, must be an absolute path"):
        source.parse_params({"path": "relative"})
    s = sub("diskfree", {"path": str(tmp_path), "interval_s": 0.1, "unit": "B"})
    async with engine(make_settings(amqp_url, cache_namespace), {"diskfree": source}):
        amqp_bus.demand("diskfree", [s])
        await eventually(lambda: len(amqp_bus.values(s.sid)) >= 3, what="three samples")
    assert all(isinstance(v, float) and v > 0 for _, v in amqp_bus.values(s.sid))
    ann = [a for a in amqp_bus.announcements if a.source == "diskfree"]
    assert ann and ann[0].subscription_schema["properties"]["unit"]["enum"] == ["B", "MiB", "GiB"]
    assert ann[0].capacity == 100


def test_builtin_sources_are_registered_entry_points() -> None:
    sources = load_sources()
    assert {"simulator", "csv", "http", "mqtt"} <= set(sources)
    assert set(load_sources(["csv", "http"])) == {"csv", "http"}
    with pytest.raises(RegistryError, match="'nope'"):
        load_sources(["simulator", "nope"])
