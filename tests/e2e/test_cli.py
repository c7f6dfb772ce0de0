"""The `tributary` CLI's main commands against the running platform, as a user would type them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jwt

from tests.e2e.conftest import SECRET, Platform

SCHEMA = '{"type": "object", "required": ["value"], "properties": {"value": {"type": "number"}}}'


def cli(e2e: Platform, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TRIBUTARY_HUB_URL": e2e.hub_url,
        "TRIBUTARY_STREAM_URL": e2e.stream_url,
        "TRIBUTARY_TOKEN": e2e.token,
        "TRIBUTARY_JWT_SECRET": SECRET,
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [sys.executable, "-m", "tributary_client.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, f"tributary {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_token_has_the_scopes_asked_for(e2e: Platform) -> None:
    token = cli(e2e, "token", "--scope", "events:read", "--topics", "orders.#").stdout.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["scope"] == "events:read"
    assert claims["topics"] == ["orders.#"]


def test_topics_publish_history_and_tail(e2e: Platform, tmp_path: Path) -> None:
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    created = json.loads(cli(e2e, "--json", "topics", "create", topic, "--schema", SCHEMA).stdout)
    assert created["name"] == topic
    listed = json.loads(cli(e2e, "--json", "topics", "list").stdout)
    assert topic in {t["name"] for t in listed}
    assert topic in cli(e2e, "topics", "list").stdout  # the human table

    one = json.loads(cli(e2e, "--json", "publish", topic, '{"value": 1}', "--subject", "plant1.a").stdout)
    lines = "".join(json.dumps({"data": {"value": v}, "subject": "plant1.b"}) + "\n" for v in range(2, 6))
    many = json.loads(cli(e2e, "--json", "publish", topic, stdin=lines).stdout)
    assert len(many["ids"]) == 4

    bad = cli(e2e, "publish", topic, '{"value": "warm"}', check=False)
    assert bad.returncode == 7  # refused as invalid (ExitCode.INVALID)
    assert "/data/value" in bad.stderr  # the error names where the data is wrong

    out = tmp_path / "export.jsonl"
    deadline = time.monotonic() + 20
    while True:
        cli(e2e, "history", topic, "--subject", "plant1.#", "--format", "jsonl", "-o", str(out))
        rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        if len(rows) == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [r["id"] for r in rows] == [one["id"], *many["ids"]]

    # tail --since replays the history and stops after --count frames.
    tailed = cli(e2e, "--json", "tail", f"{topic}.#", "--since", "2000-01-01T00:00:00Z", "--count", "5").stdout
    frames = [json.loads(line) for line in tailed.splitlines()]
    assert [f["event"]["id"] for f in frames] == [one["id"], *many["ids"]]


def test_unitops_commands(e2e: Platform) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    definition = json.dumps({"name": name, "items": {"t": {"source": "simulator", "params": {"signal": "ramp"}}}})
    deadline = time.monotonic() + 30
    while True:  # items are validated against the announced simulator source
        result = cli(e2e, "--json", "unitops", "create", definition, check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    shown = json.loads(cli(e2e, "--json", "unitops", "show", name).stdout)
    assert shown["items"]["t"]["source"] == "simulator"
    assert name in {u["name"] for u in json.loads(cli(e2e, "--json", "unitops", "list", "--prefix", "cli-").stdout)}
    cli(e2e, "unitops", "delete", name)
    missing = cli(e2e, "unitops", "show", name, check=False)
    assert missing.returncode == 6  # not found (ExitCode.NOT_FOUND)
    assert "404" in missing.stderr
