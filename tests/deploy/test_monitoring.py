"""The monitoring component: the PrometheusRule passes `promtool check rules` and its `promtool test rules` cases,
every metric the alerts and the dashboard read exists in the services' code, and the Grafana dashboard is a
well-formed dashboard model. promtool comes from Debian's `prometheus` package (`make tools`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

from tests.deploy.manifests import K8S, of_kind, render

MONITORING = K8S / "components/monitoring"
RULE = MONITORING / "prometheusrule.yaml"
RULE_TESTS = MONITORING / "prometheusrule.test.yaml"
DASHBOARD = MONITORING / "dashboard.json"
README = K8S.parent / "README.md"
# Metrics of the cluster's own exporters that the rules may read (kube-prometheus-stack ships them).
EXTERNAL = {"kube_pod_status_ready"}
METRIC = re.compile(r"\b((?:tributary|stream|kube)_[a-zA-Z0-9_]+)")


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make tools` installs Debian's prometheus package"
    return path


def _registry_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    return names


@pytest.fixture(scope="module")
def real_metrics() -> set[str]:
    """Every metric name the services expose, from their own registries."""
    import tributary_hub.api.events
    import tributary_hub.queue_depth
    import tributary_hub.recorder
    import tributary_hub.stored  # noqa: F401 - their metrics register on import
    from tributary_common.http_metrics import metrics_for
    from tributary_ingest.metrics import IngestMetrics
    from tributary_stream.metrics import StreamMetrics

    http = CollectorRegistry()
    metrics_for(http)
    names = _registry_names(REGISTRY) | _registry_names(http)
    names |= _registry_names(IngestMetrics().registry) | _registry_names(StreamMetrics().registry)
    assert "tributary_hub_events_published_total" in names and "tributary_stream_connections" in names
    return names


def _rule() -> dict[str, Any]:
    rule: dict[str, Any] = yaml.safe_load(RULE.read_text())
    return rule


def _alerts() -> list[dict[str, Any]]:
    return [r for g in _rule()["spec"]["groups"] for r in g["rules"] if "alert" in r]


PROMETHEUSRULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "interval": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr", "labels", "annotations"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^Tributary[A-Za-z0-9]+$"},
                                        "expr": {"type": "string"},
                                        "for": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                                        "labels": {
                                            "type": "object",
                                            "required": ["severity"],
                                            "properties": {"severity": {"enum": ["warning", "critical"]}},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "required": ["summary", "description", "runbook"],
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def test_the_rule_is_rendered_in_prod_with_the_crd_structure() -> None:
    rules = of_kind(render("prod"), "PrometheusRule")
    assert set(rules) == {"tributary"}
    jsonschema.validate(rules["tributary"], PROMETHEUSRULE_SCHEMA)
    dashboards = of_kind(render("prod"), "ConfigMap")
    assert dashboards["tributary-dashboard"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboards["tributary-dashboard"]["data"]["dashboard.json"]) == json.loads(DASHBOARD.read_text())


def test_promtool_checks_and_tests_the_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rule()["spec"]))
    shutil.copy(RULE_TESTS, tmp_path / "prometheusrule.test.yaml")
    for args in (["check", "rules", "rules.yaml"], ["test", "rules", "prometheusrule.test.yaml"]):
        run = subprocess.run([_promtool(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"promtool {' '.join(args)}:\n{run.stdout}\n{run.stderr}"


def test_promtool_tests_fail_when_an_alert_is_broken(tmp_path: Path) -> None:
    # The cases are not vacuous: a threshold raised out of reach makes `promtool test rules` fail.
    spec = _rule()["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "TributaryLeaseChurn":
                rule["expr"] = rule["expr"].replace("> 3", "> 300")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(RULE_TESTS, tmp_path / "prometheusrule.test.yaml")
    run = subprocess.run([_promtool(), "test", "rules", "prometheusrule.test.yaml"], cwd=tmp_path, capture_output=True)
    assert run.returncode != 0


def test_every_alert_is_tested_and_in_the_runbook() -> None:
    tested = {c["alertname"] for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for c in t["alert_rule_test"]}
    firing = {
        c["alertname"]
        for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for c in t["alert_rule_test"]
        if c.get("exp_alerts")
    }
    runbook = README.read_text()
    for alert in _alerts():
        name = alert["alert"]
        assert name in tested and name in firing, f"{name}: no promtool case where it fires"
        assert alert["annotations"]["runbook"] == f"deploy/README.md#{name.lower()}"
        assert re.search(rf"^#+ {name}$", runbook, re.MULTILINE), f"{name}: no section in deploy/README.md"
    wanted = {"Recorder", "DeadLetters", "LeaseChurn", "SlowClient", "5xx", "ReadinessFlapping"}
    assert all(any(w in a["alert"] for a in _alerts()) for w in wanted)


def _exprs() -> list[tuple[str, str]]:
    found = [(a["alert"], a["expr"]) for a in _alerts()]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        found += [(panel["title"], t["expr"]) for t in panel.get("targets", [])]
    return found


def test_rules_and_dashboard_read_only_metrics_that_exist(real_metrics: set[str]) -> None:
    for where, expr in _exprs():
        names = set(METRIC.findall(expr))
        assert names, f"{where}: reads no metric"
        unknown = names - real_metrics - EXTERNAL
        assert not unknown, f"{where}: {sorted(unknown)} exist nowhere in the code"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses recording rules: each panel query becomes one (Grafana's interval variable made concrete).
    rules = [
        {"record": f"dashboard:query:{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(_exprs())
    ]
    (tmp_path / "queries.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run = subprocess.run([_promtool(), "check", "rules", "queries.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dashboard_model_is_well_formed() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert {"uid", "title", "panels", "schemaVersion", "templating", "time"} <= set(dash)
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), "panel ids must be unique integers"
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        assert panel["type"] in {"row", "timeseries", "stat", "gauge", "table"}, panel["type"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, f"{panel['title']}: outside the grid"
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), f"{panel['title']}: refIds must be unique"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("publish rate", "publish latency", "recorder lag", "clients", "drops", "leases per instance"):
        assert topic in titles, f"the dashboard has no {topic} panel"
