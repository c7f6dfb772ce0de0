"""The `tributary` CLI's expected failures (issue 17), run as a user would: one line naming the cause and what
to do (the violations each on its own line), a distinct exit code per kind, and a traceback only with --debug."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import MINT, Stack, run_stack
from tributary_client.errors import ExitCode

SCHEMA = '{"type": "object", "required": ["value"], "properties": {"value": {"type": "number"}}}'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(Path(tmp_path_factory.mktemp("cli-failure-logs")), services=("hub",)) as s:
        yield s


def cli(hub_url: str, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIBUTARY_")}
    env |= {"TRIBUTARY_HUB_URL": hub_url, "COLUMNS": "200"}
    if token is not None:
        env["TRIBUTARY_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "tributary_client.cli", *args], capture_output=True, text=True, env=env, timeout=60
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_no_hub_running_is_one_line_naming_the_url_and_make_up() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = cli(url, "whatever", "topics", "list")
    line = _one_line(result)
    assert result.returncode == ExitCode.UNREACHABLE == 3
    assert url in line and "make up" in line, line
    debug = cli(url, "whatever", "--debug", "topics", "list")
    assert debug.returncode == ExitCode.UNREACHABLE and "Traceback" in debug.stderr and "ConnectError" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == line  # the same explanation after the traceback


def test_no_stream_running_is_one_line_naming_the_url() -> None:
    url = f"ws://127.0.0.1:{_free_port()}"
    env_url = f"http://127.0.0.1:{_free_port()}"
    result = cli(env_url, "whatever", "--stream", url, "tail", "orders.#")
    line = _one_line(result)
    assert result.returncode == ExitCode.UNREACHABLE and url in line and "make up" in line, line


def test_authentication_and_scope_failures_say_what_is_missing(stack: Stack) -> None:
    reader = MINT(["events:read"], subject="cli-reader")
    result = cli(stack.hub_url, reader, "topics", "list")
    assert result.returncode == ExitCode.FORBIDDEN == 5, result.stderr
    assert "'topics:read'" in _one_line(result)
    expired = MINT(subject="cli-old", ttl_s=-60)
    result = cli(stack.hub_url, expired, "topics", "list")
    assert result.returncode == ExitCode.UNAUTHENTICATED == 4, result.stderr
    assert "expired" in _one_line(result)
    result = cli(stack.hub_url, None, "topics", "list")
    assert result.returncode == ExitCode.UNAUTHENTICATED and "no token" in _one_line(result)
    result = cli(stack.hub_url, "not-a-token", "topics", "list")
    assert result.returncode == ExitCode.UNAUTHENTICATED and "TRIBUTARY_TOKEN" in _one_line(result)


def test_refusals_list_violations_and_have_their_own_codes(stack: Stack) -> None:
    topic = f"cli-fail-{uuid.uuid4().hex[:6]}"
    assert cli(stack.hub_url, stack.token, "topics", "create", topic, "--schema", SCHEMA).returncode == 0
    result = cli(stack.hub_url, stack.token, "topics", "create", topic, "--schema", SCHEMA)
    assert result.returncode == ExitCode.CONFLICT == 8 and "409" in _one_line(result)
    result = cli(stack.hub_url, stack.token, "topics", "show", f"{topic}-nope")
    assert result.returncode == ExitCode.NOT_FOUND == 6 and "404" in _one_line(result)
    result = cli(stack.hub_url, stack.token, "publish", topic, '{"value": "hot", "other": [1]}')
    assert result.returncode == ExitCode.INVALID == 7, result.stderr
    assert "Traceback" not in result.stderr
    head, *violations = result.stderr.strip().splitlines()
    assert head.startswith("error: ") and "422 invalid_event" in head
    assert any(v.strip().startswith("/data/value:") for v in violations), violations
    # A message with brackets is printed as it is (no markup eats it).
    result = cli(stack.hub_url, stack.token, "publish", topic, '{"value": 1}', "--subject", "[bad]")
    assert result.returncode == ExitCode.INVALID and "[bad]" in result.stderr, result.stderr


def test_help_documents_the_exit_codes() -> None:
    result = cli("http://127.0.0.1:1", None, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "Exit codes:" in text and "3 hub or stream unreachable" in text and "--debug" in text
