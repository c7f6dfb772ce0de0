"""Single-event publishing through HTTP, loaded by `wrk` (a native generator: on 2 cores a Python client
saturates a core before the hub does and measures itself), against a baseline measured in the same run.

Load: 1 wrk thread, 16 connections, 8 s per case after a 2 s warm-up, body
`{"data": {"value": 21.5, "unit": "C"}, "subject": "plant1.line1"}` to a topic whose schema requires a number and an
enum. Cases, each a real process on the local RabbitMQ, FerretDB and Memcached in a vhost/database of its own:

- baseline: bench/baselines/hub_app.py (FastAPI + orjson + jsonschema-rs + envelope + confirmed aio-pika publish);
- hub, recorders in-process (the default of `tributary-hub serve`);
- hub, recorders in their own process (`serve` with TRIBUTARY_RECORDERS_ENABLED=false + `tributary-hub recorder`);
- hub traced at 10 % (parentbased_traceidratio) and at 100 %, exporting OTLP to a receiver in another process
  (recorders in their own process, so that the ratio is tracing's alone);
- hub, no recorder at all (`serve` with TRIBUTARY_RECORDERS_ENABLED=false alone; the recorders' queues fill): the
  HTTP path's cost alone, without the recording (recorder, FerretDB) that shares the 2 cores in the other cases.
  Measured after the others, so that no recorder has a backlog to drain while it is measured.

The baseline runs first and last; the ratios use the mean of its two runs. Every response must be 202: a case
with non-2xx answers is reported as failed. `.venv/bin/python bench/http_publish.py` (about 1.5 minutes).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hub_publish import start_receiver  # noqa: E402
from bench.support.ratios import record  # noqa: E402
from tests.support import platform  # noqa: E402
from tests.support.processes import ServiceProcess  # noqa: E402
from tributary_common.auth import mint_token  # noqa: E402

SECRET = "bench-secret-0123456789-0123456789-abcdef"
SCHEMA = {
    "type": "object",
    "required": ["value", "unit"],
    "properties": {"value": {"type": "number"}, "unit": {"type": "string", "enum": ["C", "F"]}},
}
BODY = {"data": {"value": 21.5, "unit": "C"}, "subject": "plant1.line1"}
CONNECTIONS, WARMUP_S, MEASURE_S = 16, 2, 8
SCRIPT = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


@dataclass
class Result:
    rate: float
    p50_ms: float
    p99_ms: float
    failed: int


def wrk(url: str, token: str | None, seconds: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
        script.write(SCRIPT.format(body=orjson.dumps(BODY).decode(), auth=auth))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", script.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return Result(
        rate=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=latency(out, "50%"),
        p99_ms=latency(out, "99%"),
        failed=(int(failed.group(1)) if failed else 0) + (1 if errors else 0),
    )


def latency(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return in_ms(value, unit)


def in_ms(value: str, unit: str) -> float:
    """A duration as wrk prints it (`us`, `ms`, `s`), in milliseconds."""
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def measure(url: str, token: str | None = None) -> Result:
    wrk(url, token, WARMUP_S)
    return wrk(url, token, MEASURE_S)


@contextmanager
def baseline(amqp_url: str) -> Iterator[str]:
    port = platform.free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/baselines/hub_app.py"), str(port), amqp_url, orjson.dumps(SCHEMA)]
    )
    try:
        platform.wait_for(lambda: platform.port_open(port), 30, what="baseline listening")
        yield f"http://127.0.0.1:{port}/topics/bench/events"
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def hub(env: dict[str, str], separate_recorders: bool, recorder: bool = True) -> Iterator[str]:
    logs = Path(tempfile.mkdtemp())
    port = platform.free_port()
    env = {**env, "TRIBUTARY_HTTP_PORT": str(port)}
    processes = []
    if separate_recorders:
        env["TRIBUTARY_RECORDERS_ENABLED"] = "false"
    if separate_recorders and recorder:
        recorder_env = {**env, "TRIBUTARY_HTTP_PORT": str(platform.free_port())}
        processes.append(
            ServiceProcess("tributary_hub", ["recorder"], recorder_env, logs / "recorder.log", None).start()
        )
    serve = ServiceProcess("tributary_hub", ["serve"], env, logs / "hub.log", port)
    processes.append(serve)
    try:
        serve.start(timeout=60)
        serve.wait_healthy(60, "/readyz")
        yield f"http://127.0.0.1:{port}/topics/bench/events"
    finally:
        for process in processes:
            process.terminate()


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: `make bench` installs it (deploy/local/services.sh packages wrk)")
    platform.require_services()
    with platform.isolated_env("bench-http", SECRET) as isolated:
        run({**isolated, "TRIBUTARY_LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"})


def run(env: dict[str, str]) -> None:
    amqp_url = env["TRIBUTARY_AMQP_URL"]
    token = mint_token(SECRET, subject="bench")
    receiver, endpoint = start_receiver()
    traced = {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "tributary-hub",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    }
    results: dict[str, Result] = {}
    try:
        with baseline(amqp_url) as url:
            results["baseline (first)"] = measure(url)
        with hub(env, separate_recorders=False) as url:
            topic = httpx.post(
                url.removesuffix("/bench/events"),
                json={"name": "bench", "schema": SCHEMA},
                headers={"Authorization": f"Bearer {token}"},
            )
            topic.raise_for_status()
            results["hub, recorders in-process"] = measure(url, token)
        with hub(env, separate_recorders=True) as url:
            results["hub, recorders own process"] = measure(url, token)
        for name, ratio in (("hub traced 10%", "0.1"), ("hub traced 100%", "1.0")):
            with hub({**env, **traced, "OTEL_TRACES_SAMPLER_ARG": ratio}, separate_recorders=True) as url:
                results[name] = measure(url, token)
        with hub(env, separate_recorders=True, recorder=False) as url:
            results["hub, no recorder"] = measure(url, token)
        with baseline(amqp_url) as url:
            results["baseline (last)"] = measure(url)
    finally:
        receiver.kill()

    base = (results["baseline (first)"].rate + results["baseline (last)"].rate) / 2
    untraced = results["hub, recorders own process"].rate
    print(f"single POST, wrk 1 thread x {CONNECTIONS} connections, {MEASURE_S} s per case")
    print(f"{'case':<30} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'/baseline':>10} {'non-202':>8}")
    for name, r in results.items():
        print(f"{name:<30} {r.rate:>8.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.rate / base:>10.2f} {r.failed:>8}")
    for name in ("hub traced 10%", "hub traced 100%"):
        print(f"{name} / untraced (recorders own process): {results[name].rate / untraced:.2f}")
    bench = "http_publish.py"
    record(bench, "single POST, recorders own process", untraced, "req/s", base, ">= 0.9")
    record(
        bench, "single POST, recorders in-process", results["hub, recorders in-process"].rate, "req/s", base, ">= 0.75"
    )
    record(bench, "single POST traced 10% vs untraced", results["hub traced 10%"].rate, "req/s", untraced, ">= 0.9")
    record(bench, "single POST traced 100% vs untraced", results["hub traced 100%"].rate, "req/s", untraced, ">= 0.65")
    if any(r.failed for r in results.values()):
        sys.exit("some requests were not answered 202")


if __name__ == "__main__":
    main()
