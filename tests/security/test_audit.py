"""Audit (issue 17): topics, schema versions, unitops and API keys keep who created and last changed them;
`GET /audit` (admin only) lists every administrative change with before/after, newest first in cursor pages,
unitop secrets masked and API key secrets absent - against real hub and ingest processes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, run_stack
from tributary_common.auth import SCOPES

SCHEMA = {"type": "object", "properties": {"v": {"type": "number"}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"TRIBUTARY_HTTP_ALLOW": "127.0.0.1"}  # unitops point at loopback (never reached in these tests)
    with run_stack(Path(tmp_path_factory.mktemp("audit-logs")), services=("hub", "ingest"), env=env) as s:
        yield s


def _client(stack: Stack, token: str) -> httpx.Client:
    return httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _all(hub: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = hub.get("/audit", params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next"]
        if cursor is None:
            return items


def test_topic_changes_are_attributed_and_audited(stack: Stack) -> None:
    name = f"audited-{uuid.uuid4().hex[:6]}"
    writer = stack.mint(subject="integrator-1", scopes=["topics:write", "topics:read"])
    with _client(stack, writer) as hub:
        created = hub.post("/topics", json={"name": name, "schema": SCHEMA}).json()
        assert created["created_by"] == "integrator-1" and created["updated_by"] == "integrator-1"
    other = stack.mint(subject="integrator-2", scopes=["topics:write", "topics:read"])
    with _client(stack, other) as hub:
        assert hub.patch(f"/topics/{name}", json={"description": "line 3"}).json()["updated_by"] == "integrator-2"
        v2 = {**SCHEMA, "properties": {"v": {"type": "number"}, "w": {"type": "string"}}}
        after = hub.put(f"/topics/{name}/schema", json={"schema": v2}).json()
        assert after["updated_by"] == "integrator-2" and after["created_by"] == "integrator-1"
        versions = hub.get(f"/topics/{name}/schemas").json()["items"]
        assert [v["created_by"] for v in versions] == ["integrator-1", "integrator-2"]
        assert hub.delete(f"/topics/{name}").status_code == 204
        assert hub.get("/audit").status_code == 403  # admin only
    with _client(stack, stack.token) as admin:
        entries = _all(admin, target=name)
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("topic.deleted", "integrator-2"),
        ("topic.schema_added", "integrator-2"),
        ("topic.updated", "integrator-2"),
        ("topic.created", "integrator-1"),
    ]
    deleted, schema_added, updated, created_entry = entries
    assert created_entry["before"] is None and created_entry["after"]["schema"] == SCHEMA
    assert updated["before"]["description"] is None and updated["after"]["description"] == "line 3"
    assert schema_added["before"]["version"] == 1 and schema_added["after"]["version"] == 2
    assert deleted["before"]["name"] == name and deleted["after"] == {"events_deleted": False}
    times = [e["time"] for e in entries]
    assert times == sorted(times, reverse=True)


def test_unitop_secrets_stay_masked_in_the_audit(stack: Stack) -> None:
    with _client(stack, stack.token) as admin:
        deadline = time.monotonic() + 30
        while not any(s["name"] == "http" for s in admin.get("/sources").json()["items"]):
            assert time.monotonic() < deadline, "ingest never announced the http source"
            time.sleep(0.3)
        name = f"pump-{uuid.uuid4().hex[:6]}"
        params = {
            "url": "http://127.0.0.1:9/reading",
            "pointer": "/v",
            "interval_s": 60.0,
            "headers": {"Authorization": {"secret": "PLANT_TOKEN"}, "X-Line": "3"},
        }
        body = {"name": name, "items": {"flow": {"source": "http", "params": params}}}
        r = admin.post("/unitops", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["created_by"] == "sec-admin"
        # A literal credential is refused (a 422), so never stored nor audited.
        headers = {"Authorization": "hunter2"}
        literal = {**body, "items": {"flow": {"source": "http", "params": {**params, "headers": headers}}}}
        assert admin.put(f"/unitops/{name}", json=literal).status_code == 422
        assert admin.delete(f"/unitops/{name}").status_code == 204
        entries = _all(admin, target=name, action="unitop")
        text = str(entries)
    assert [e["action"] for e in entries] == ["unitop.deleted", "unitop.created"]
    assert entries[1]["after"]["items"]["flow"]["params"]["headers"]["Authorization"] == {"secret": "PLANT_TOKEN"}
    assert "hunter2" not in text


def test_api_key_secrets_never_reach_the_audit(stack: Stack) -> None:
    with _client(stack, stack.token) as admin:
        created = admin.post("/apikeys", json={"name": "audited", "scopes": ["events:read"]}).json()
        assert admin.delete(f"/apikeys/{created['id']}").status_code == 204
        entries = _all(admin, target=created["id"])
    assert [e["action"] for e in entries] == ["apikey.deleted", "apikey.created"]
    assert created["key"] not in str(entries) and "key_hash" not in str(entries)
    assert entries[1]["after"]["created_by"] == "sec-admin"


def test_scrub_masks_credential_like_literals() -> None:
    from tributary_hub.audit import scrub

    value = {"password": "x", "nested": [{"api_key": 5, "token": {"secret": "T"}}], "host": "h", "Cookie": None}
    assert scrub(value) == {
        "password": "***",
        "nested": [{"api_key": "***", "token": {"secret": "T"}}],
        "host": "h",
        "Cookie": None,
    }


@pytest.mark.parametrize(
    "params",
    [
        {"action": "topic.$where"},
        {"action": "x" * 100},
        {"cursor": "not a cursor!"},
        {"start": "yesterday"},
        {"limit": "0"},
        {"limit": "100000"},
        {"actor": "a" * 300},
        {"target": "t" * 300},
    ],
)
def test_hostile_audit_queries_are_422(stack: Stack, params: dict[str, str]) -> None:
    with _client(stack, stack.token) as admin:
        r = admin.get("/audit", params=params)
    assert r.status_code == 422, r.text


def test_actor_filter_and_time_bounds(stack: Stack) -> None:
    with _client(stack, stack.token) as admin:
        mark = admin.get("/audit", params={"limit": 1}).json()["items"]
        who = f"someone-{uuid.uuid4().hex[:6]}"
        with _client(stack, stack.mint(subject=who, scopes=list(SCOPES[:2]))) as hub:
            assert hub.post("/topics", json={"name": f"t-{uuid.uuid4().hex[:6]}", "schema": SCHEMA}).status_code == 201
        mine = _all(admin, actor=who)
        assert [e["action"] for e in mine] == ["topic.created"]
        if mark:
            newer = _all(admin, start=mark[0]["time"])
            assert mine[0]["id"] in {e["id"] for e in newer}
            assert mine[0]["id"] not in {e["id"] for e in _all(admin, end=mark[0]["time"])}
