"""Run Schemathesis (every check; coverage, fuzzing and stateful phases) against a running service, as the CLI
in a subprocess: a fixed seed and a bounded number of examples per operation keep it reproducible and short."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from openapi_spec_validator import validate

HERE = Path(__file__).parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = 20261126


@dataclass
class Run:
    returncode: int
    output: str
    report: dict[str, Any]
    seconds: float

    @property
    def summary(self) -> str:
        start = self.output.find("SUMMARY")
        return self.output[start:] if start >= 0 else self.output[-4000:]

    @property
    def figures(self) -> str:
        cases = self.report.get("test_cases", {})
        operations = self.report.get("operations", {})
        return (
            f"schemathesis: {operations.get('selected', '?')} operations, {cases.get('generated', '?')} test cases, "
            f"{cases.get('unique_failures', '?')} failures, {cases.get('errored', '?')} errored, {self.seconds:.1f} s"
        )


def fetch_document(base_url: str) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{base_url}/openapi.json", timeout=30).raise_for_status().json()
    return doc


def unresolved_refs(doc: dict[str, Any]) -> list[str]:
    """Every local `$ref` that points at nothing in the document (the validator does not look)."""
    missing: list[str] = []

    def resolve(ref: str) -> bool:
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#") and not resolve(ref):
                missing.append(ref)
            for v in node.values():
                visit(v)
        elif isinstance(node, list):
            for v in node:
                visit(v)

    visit(doc)
    return sorted(set(missing))


def check_document(base_url: str) -> dict[str, Any]:
    doc = fetch_document(base_url)
    validate(doc)  # raises with the first violation of OpenAPI 3.1
    missing = unresolved_refs(doc)
    assert missing == [], f"references that resolve to nothing: {missing}"
    return doc


def run_schemathesis(
    base_url: str,
    token: str,
    workdir: Path,
    *extra: str,
    max_examples: int = 25,
    config: str = "schemathesis.toml",
    request_timeout: float = 20,
) -> Run:
    report = workdir / "schemathesis.json"
    cmd = [
        str(SCHEMATHESIS),
        "--no-color",
        "--config-file",
        str(HERE / config),
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        str(SEED),
        "--max-examples",
        str(max_examples),
        "--workers",
        "1",
        "--request-timeout",
        str(request_timeout),
        "--header",
        f"Authorization: Bearer {token}",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--generation-database",
        "none",
        *extra,
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.contract.hooks"}
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=HERE.parent.parent, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - t0
    output = done.stdout + done.stderr
    data = json.loads(report.read_text()) if report.exists() else {}
    return Run(done.returncode, output, data, seconds)
