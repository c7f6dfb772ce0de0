"""Publish -> websocket latency at a fixed rate (issue 13: p99 <= 25 ms at 1,500 single POSTs/s, hub, recorder and
stream processes all on this machine).

Processes, each real, in a vhost, database and cache namespace of their own: `tributary-hub serve` (recorders off)
+ `tributary-hub recorder` + `tributary-stream serve`. Load and receivers are one native program,
bench/publish_latency_load.go (built here with `go build`, standard library only): `--clients` websockets subscribed
to the topic, then single `POST /topics/bench/events` at 500, 1,000 and 1,500 events/s, `--seconds` each, open
loop (each request due at start + i/rate; at most 64 in flight). Each event carries its due time; latency is its
arrival at each client minus that time, so a hub that cannot keep the rate shows it in the tail. Each frame's
latency is also split at the hub's `time` stamp (the HTTP leg, and the rest), and the frames slower than the p99
are counted by the second they were due in (a stall clusters; a growing backlog ends the phase).

`--profile DIR`: py-spy (`/tmp/prof/bin/py-spy` or on PATH) records the hub, recorder and stream during the
1,500/s phase (raw collapsed stacks in DIR; bench/support/pyspy_top.py summarises them).
`.venv/bin/python bench/publish_latency.py` (about a minute).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_publish import SECRET, hub  # noqa: E402
from bench.support.ratios import record  # noqa: E402
from tests.support import platform  # noqa: E402
from tests.support.processes import ServiceProcess  # noqa: E402
from tributary_common.auth import mint_token  # noqa: E402

SCHEMA = {
    "type": "object",
    "required": ["ts", "phase"],
    "properties": {"ts": {"type": "integer"}, "phase": {"type": "integer"}},
}
RATES = (500, 1000, 1500)
GOAL_RATE, GOAL_P99_MS = 1500, 25.0


def build() -> Path:
    if shutil.which("go") is None:
        sys.exit("go is missing (the load generator is bench/publish_latency_load.go)")
    out = Path(tempfile.mkdtemp()) / "publish_latency_load"
    subprocess.run(["go", "build", "-o", str(out), str(ROOT / "bench/publish_latency_load.go")], check=True)
    return out


def py_spy() -> str | None:
    return shutil.which("py-spy") or next((p for p in ["/tmp/prof/bin/py-spy"] if Path(p).exists()), None)


def main(args: argparse.Namespace) -> None:
    platform.require_services()
    binary = build()
    with platform.isolated_env("bench-latency", SECRET) as isolated:
        env = {**isolated, "TRIBUTARY_LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}
        results = run(binary, env, args)
    print(
        f"publish -> websocket latency, {args.clients} clients, {args.seconds:.0f} s per rate "
        "(hub serve + recorder + stream processes, load from a native generator)"
    )
    print("p99 in / out: the p99 of each leg on its own, due -> the hub's `time` stamp (HTTP, hub) and the stamp ->")
    print("the client (publish, confirm, RabbitMQ, stream, websocket); slow/s: frames above the p99 by due second")
    print(
        f"{'offered/s':>9} {'achieved/s':>10} {'non-202':>7} {'frames':>13} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'p99 in':>7} {'p99 out':>7}  slow/s"
    )
    for r in results:
        frames = f"{r['frames']}/{r['expected']}"
        print(
            f"{r['rate']:>9} {r['achieved']:>10.0f} {r['failed']:>7} {frames:>13} "
            f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
            f"{r['p99_ingress_ms']:>7.1f} {r['p99_delivery_ms']:>7.1f}  {' '.join(map(str, r['slow_by_second']))}"
        )
        if r.get("first_error"):
            print(f"  first error: {r['first_error'][:200]}")
    goal = next((r for r in results if r["rate"] == GOAL_RATE), None)
    if goal is not None:
        record(
            "publish_latency.py", f"publish -> websocket p99 at {GOAL_RATE:,}/s", goal["p99_ms"], "ms", None, "<= 25"
        )
        record(
            "publish_latency.py",
            f"rate achieved of {GOAL_RATE:,}/s offered",
            goal["achieved"],
            "/s",
            None,
            f">= {GOAL_RATE * 0.98:.0f}",
        )
    if any(r["failed"] or r["frames"] < r["expected"] for r in results):
        sys.exit("some events were refused or never reached every client")


def run(binary: Path, env: dict[str, str], args: argparse.Namespace) -> list[dict[str, Any]]:
    token = mint_token(SECRET, subject="bench")
    logs = Path(tempfile.mkdtemp())
    stream_port = platform.free_port()
    stream = ServiceProcess(
        "tributary_stream",
        ["serve"],
        {**env, "TRIBUTARY_HTTP_PORT": str(stream_port)},
        logs / "stream.log",
        stream_port,
    )
    with hub(env, separate_recorders=True) as url:
        topics = url.removesuffix("/bench/events")
        created = httpx.post(
            topics, json={"name": "bench", "schema": SCHEMA}, headers={"Authorization": f"Bearer {token}"}
        )
        created.raise_for_status()
        try:
            stream.start(timeout=60)
            stream.wait_healthy(60, "/readyz")
            load = subprocess.Popen(
                [
                    str(binary),
                    f"-hub={url}",
                    f"-token={token}",
                    f"-ws=ws://127.0.0.1:{stream_port}/ws",
                    f"-ws-token={mint_token(SECRET, subject='bench-reader', scopes=['events:read'])}",
                    f"-clients={args.clients}",
                    f"-rates={','.join(str(r) for r in args.rates)}",
                    f"-seconds={args.seconds}",
                ],
                stdout=subprocess.PIPE,
            )
            assert load.stdout is not None
            results: list[dict[str, Any]] = []
            for line in load.stdout:
                result = orjson.loads(line)
                print(f"  {result['rate']}/s done", flush=True)
                results.append(result)
                if args.profile and len(results) == len(args.rates) - 1:
                    profile(args.profile, args.seconds)  # the last (highest) rate starts now
            if load.wait() != 0:
                sys.exit(f"the load generator failed ({load.returncode})")
        finally:
            stream.terminate()
    return results


def profile(out: Path, seconds: float) -> None:
    """py-spy on every Tributary process of this run for the next phase (in the background)."""
    spy = py_spy()
    if spy is None:
        print("  py-spy not found: no profile", flush=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    # Only this run's processes: the children of this one (other benches on the machine run the same modules).
    pids = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True).stdout
    for pid in pids.split():
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if "tributary_" not in cmd:
            continue
        name = "stream" if "tributary_stream" in cmd else "recorder" if " recorder" in cmd else "hub"
        subprocess.Popen(
            [
                spy,
                "record",
                "-r",
                "200",
                "-d",
                str(int(seconds) - 1),
                "-f",
                "raw",
                "--nonblocking",
                "-p",
                pid,
                "-o",
                str(out / f"{name}-{pid}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=list(RATES))
    parser.add_argument("--profile", type=Path, default=None)
    main(parser.parse_args())
