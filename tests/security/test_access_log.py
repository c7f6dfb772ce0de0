"""Access logs (issue 17): one JSON line per request with a request id (the caller's when sane, else generated;
returned either way), the principal, the client address (X-Forwarded-For believed only from
TRIBUTARY_TRUSTED_PROXIES), status and duration - read from the logs of real hub and stream processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, run_stack
from tributary_common.access_log import client_address, parse_networks


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    per_service = {
        "hub": {"TRIBUTARY_TRUSTED_PROXIES": "127.0.0.1/32, ::1"},
        "stream": {"TRIBUTARY_TRUSTED_PROXIES": '["10.0.0.0/8"]'},  # the test client is not a proxy of the stream
    }
    logs = Path(tmp_path_factory.mktemp("access-logs"))
    with run_stack(logs, services=("hub", "stream"), env={"TRIBUTARY_LOG_JSON": "true"}, per_service=per_service) as s:
        yield s


def _line(stack: Stack, service: str, request_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    path = stack.logs / f"{service}.log"
    while time.monotonic() < deadline:
        for raw in path.read_text(errors="replace").splitlines():
            if request_id in raw and raw.startswith("{"):
                entry: dict[str, Any] = json.loads(raw)
                if entry.get("logger") == "tributary.access" and entry.get("request_id") == request_id:
                    return entry
        time.sleep(0.1)
    raise AssertionError(f"no access log line with request id {request_id} in {path}")


def test_a_request_is_logged_with_its_id_principal_client_status_and_duration(stack: Stack) -> None:
    rid = f"req-{uuid.uuid4().hex}"
    r = httpx.get(
        stack.hub_url + "/topics",
        headers={"Authorization": f"Bearer {stack.token}", "X-Request-ID": rid},
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == rid
    entry = _line(stack, "hub", rid)
    assert entry["principal"] == "sec-admin" and entry["status"] == 200 and entry["method"] == "GET"
    assert entry["path"] == "/topics" and entry["client"] == "127.0.0.1" and entry["duration_ms"] > 0
    assert entry["msg"] == "GET /topics 200" and entry["service"] == "tributary-hub"


@pytest.mark.parametrize(
    "hostile",
    ["x" * 129, "a b", "id\\n{}", '"><script>', "ünïcode", "", "a,b", "../../etc"],
)
def test_a_hostile_request_id_is_replaced(stack: Stack, hostile: str) -> None:
    r = httpx.get(
        stack.hub_url + "/whoami",
        headers={b"Authorization": f"Bearer {stack.token}".encode(), b"X-Request-ID": hostile.encode()},
        timeout=30,
    )
    assert r.status_code == 200
    generated = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated), generated
    assert _line(stack, "hub", generated)["status"] == 200


def test_refused_requests_are_logged_without_a_principal(stack: Stack) -> None:
    r = httpx.get(stack.hub_url + "/topics", headers={"Authorization": "Bearer nonsense"}, timeout=30)
    assert r.status_code == 401
    entry = _line(stack, "hub", r.headers["x-request-id"])
    assert entry["status"] == 401 and entry["principal"] is None


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("198.51.100.1, 203.0.113.9, 127.0.0.1", "203.0.113.9"),  # right-most hop that is not a trusted proxy
        ("not-an-address", "127.0.0.1"),
        ("203.0.113.9, <script>", "127.0.0.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("," * 5000, "127.0.0.1"),
    ],
)
def test_forwarded_for_is_believed_from_a_trusted_proxy_only(stack: Stack, forwarded: str, client: str) -> None:
    headers = {"Authorization": f"Bearer {stack.token}", "X-Forwarded-For": forwarded}
    headers["X-Request-ID"] = uuid.uuid4().hex
    r = httpx.get(stack.hub_url + "/whoami", headers=headers, timeout=30)
    assert _line(stack, "hub", r.headers["x-request-id"])["client"] == client
    # The stream trusts only 10.0.0.0/8: the same header from this client is ignored there.
    r = httpx.get(stack.stream_http_url + "/whoami", headers=headers, timeout=30)
    entry = _line(stack, "stream", r.headers["x-request-id"])
    assert entry["client"] == "127.0.0.1" and entry["principal"] == "sec-admin"


def test_client_address_rules() -> None:
    proxies = parse_networks(["10.0.0.0/8"])
    assert client_address("10.1.2.3", "1.2.3.4, 10.9.9.9", proxies) == "1.2.3.4"
    assert client_address("10.1.2.3", "10.2.2.2, 10.9.9.9", proxies) == "10.2.2.2"  # all proxies: the first
    assert client_address("192.0.2.1", "1.2.3.4", proxies) == "192.0.2.1"
    assert client_address("10.1.2.3", None, proxies) == "10.1.2.3"
    assert client_address(None, "1.2.3.4", proxies) is None
    assert client_address("10.1.2.3", "1.2.3.4", ()) == "10.1.2.3"


@pytest.mark.parametrize("value", ["10.0.0.0/33", "not-a-cidr", '["10.0.0.0/8", 5]', "[oops"])
def test_bad_trusted_proxies_refuse_to_start(value: str, tmp_path: Path) -> None:
    env = {**os.environ, "TRIBUTARY_TRUSTED_PROXIES": value, "TRIBUTARY_JWT_SECRET": "x" * 40}
    done = subprocess.run(
        [sys.executable, "-m", "tributary_hub", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "TRIBUTARY_TRUSTED_PROXIES" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
