"""The shape of the code (ARCHITECTURE.md): no import cycles between the modules of a package, no module in
services/ or libs/ over 300 lines, and contracts only in libs/common (no service imports another service)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "tributary_common": ROOT / "libs/common/src/tributary_common",
    "tributary_client": ROOT / "libs/client/src/tributary_client",
    "tributary_hub": ROOT / "services/hub/src/tributary_hub",
    "tributary_ingest": ROOT / "services/ingest/src/tributary_ingest",
    "tributary_stream": ROOT / "services/stream/src/tributary_stream",
}
SERVICES = ("tributary_hub", "tributary_ingest", "tributary_stream")
MAX_LINES = 300


def modules(package: str) -> dict[str, Path]:
    root = PACKAGES[package]
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the same package that `name` imports, anywhere in it (TYPE_CHECKING imports too: a cycle
    of types is a cycle of concepts)."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor if is_package else anchor[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(tree.body)
    return {m for m in found if m in known and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycles(package: str) -> None:
    known = modules(package)
    graph = {}
    for name, path in known.items():
        targets = imports(name, path, known)
        if path.name == "__init__.py":  # re-exports of its own submodules
            targets = {t for t in targets if not t.startswith(f"{name}.")}
        graph[name] = targets
    assert cycles(graph) == []


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_over_300_lines(package: str) -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in modules(package).values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize("service", SERVICES)
def test_services_share_only_libs(service: str) -> None:
    others = [s for s in SERVICES if s != service]
    leaks = {
        str(path.relative_to(ROOT)): sorted(m for m in imports_any(path) if m.split(".")[0] in others)
        for path in modules(service).values()
    }
    assert {k: v for k, v in leaks.items() if v} == {}


def imports_any(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return found


HUB_METRICS = """
import importlib, json, pkgutil
from prometheus_client import REGISTRY
import tributary_hub
from tributary_common.http_metrics import metrics_for
for module in pkgutil.walk_packages(tributary_hub.__path__, "tributary_hub."):
    importlib.import_module(module.name)
metrics_for(REGISTRY)
print(json.dumps([m.name for m in REGISTRY.collect()]))
"""
RUNTIME_METRICS = ("python_", "process_", "platform_")


def test_metric_names_follow_one_rule() -> None:
    """`tributary_<service>_<what>` for a service's own metrics, `tributary_http_<what>` for the HTTP layer all
    services share; nothing unprefixed (dashboards and alerts select by these names). The hub registers in the
    default registry: read in a process of its own, where no test has registered anything."""
    import json
    import subprocess
    import sys

    from tributary_ingest.metrics import IngestMetrics
    from tributary_stream.metrics import StreamMetrics

    hub = json.loads(subprocess.run([sys.executable, "-c", HUB_METRICS], capture_output=True, check=True).stdout)
    names = {
        "hub": set(hub),
        "ingest": {m.name for m in IngestMetrics().registry.collect()},
        "stream": {m.name for m in StreamMetrics().registry.collect()},
    }
    assert all(names.values()), names
    wrong = {
        (service, name)
        for service, found in names.items()
        for name in found
        if not name.startswith((f"tributary_{service}_", "tributary_http_", *RUNTIME_METRICS))
    }
    assert wrong == set()
