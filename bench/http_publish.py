"""Single-event publishing through HTTP, loaded by `wrk` (a native generator: on 2 cores a Python client
saturates a core before the hub does and measures itself), against a baseline measured in the same run.

Load: 1 wrk thread, 16 connections, 8 s per case after a 2 s warm-up, body
`{"data": {"value": 21.5, "unit": "C"}, "subject": "plant1.line1"}` to a topic whose schema requires a number and an
enum. Cases, each a real process on the local RabbitMQ, FerretDB and Memcached in a vhost/database of its own:

- baseline: bench/baselines/hub_app.py (FastAPI + orjson + jsonschema-rs + envelope + confirmed aio-pika publish,
  to an exchange of its own with no queue bound: the broker confirms and stores nothing);
- hub, recorders in-process (the default of `tributary-hub serve`);
- hub, recorders in their own process (`serve` with TRIBUTARY_RECORDERS_ENABLED=false + `tributary-hub recorder`);
- hub traced at 10 % (parentbased_traceidratio) and at 100 %, exporting OTLP to a receiver in another process
  (recorders in their own process, so that the ratio is tracing's alone);
- hub, no recorder at all (`serve` with TRIBUTARY_RECORDERS_ENABLED=false alone; the recorders' queues fill): the
  HTTP path's cost alone, without the recording (recorder, FerretDB) that shares the 2 cores in the other cases.
  Measured after the others, so that no recorder has a backlog to drain while it is measured.

Every case runs once per round (`--rounds`, 3 by default), between two runs of the baseline; each round's ratios
use the mean of its own two baseline runs, and the table gives the median and range over rounds (the machine's
speed drifts by tens of percent within minutes). The one-table rows are the medians. Every response must be 202: a
case with non-2xx answers is reported as failed. `.venv/bin/python bench/http_publish.py` (about 1.5 minutes a
round).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import aio_pika
import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hub_publish import start_receiver  # noqa: E402
from bench.support.ratios import record  # noqa: E402
from tests.support import platform  # noqa: E402
from tests.support.processes import ServiceProcess  # noqa: E402
from tributary_common.amqp import HUB_RECORDER_EVENTS  # noqa: E402
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every case, each with its own baseline")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: `make bench` installs it (deploy/local/services.sh packages wrk)")
    platform.require_services()
    with platform.isolated_env("bench-http", SECRET) as isolated:
        run({**isolated, "TRIBUTARY_LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}, args.rounds)


CASES = (
    "hub, recorders in-process",
    "hub, recorders own process",
    "hub traced 10%",
    "hub traced 100%",
    "hub, no recorder",
    "hub traced 10%, no recorder",
    "hub traced 100%, no recorder",
)


def one_round(env: dict[str, str], traced: dict[str, str], token: str) -> dict[str, Result]:
    """Every case once, between two runs of the baseline."""
    amqp_url = env["TRIBUTARY_AMQP_URL"]
    results: dict[str, Result] = {}
    with baseline(amqp_url) as url:
        results["baseline (first)"] = measure(url)
    with hub(env, separate_recorders=False) as url:
        topic = httpx.post(
            url.removesuffix("/bench/events"),
            json={"name": "bench", "schema": SCHEMA},
            headers={"Authorization": f"Bearer {token}"},
        )
        if topic.status_code != 409:  # made in an earlier round
            topic.raise_for_status()
        results["hub, recorders in-process"] = measure(url, token)
    with hub(env, separate_recorders=True) as url:
        results["hub, recorders own process"] = measure(url, token)
    for name, ratio in (("hub traced 10%", "0.1"), ("hub traced 100%", "1.0")):
        with hub({**env, **traced, "OTEL_TRACES_SAMPLER_ARG": ratio}, separate_recorders=True) as url:
            results[name] = measure(url, token)
    # Tracing's cost to the hub alone too: recording's CPU and the broker's stalls move the cases above by more.
    for name, more in (
        ("hub, no recorder", {}),
        ("hub traced 10%, no recorder", {**traced, "OTEL_TRACES_SAMPLER_ARG": "0.1"}),
        ("hub traced 100%, no recorder", {**traced, "OTEL_TRACES_SAMPLER_ARG": "1.0"}),
    ):
        with hub({**env, **more}, separate_recorders=True, recorder=False) as url:
            results[name] = measure(url, token)
        # Its events stay in the recorders' queue: the next hub would record them while measured.
        asyncio.run(purge(amqp_url, HUB_RECORDER_EVENTS.name))
    with baseline(amqp_url) as url:
        results["baseline (last)"] = measure(url)
    return results


async def purge(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await (await channel.declare_queue(queue, passive=True)).purge()
    finally:
        await connection.close()


def run(env: dict[str, str], rounds: int) -> None:
    token = mint_token(SECRET, subject="bench")
    receiver, endpoint = start_receiver()
    traced = {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "tributary-hub",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    }
    runs: list[dict[str, Result]] = []
    try:
        for n in range(rounds):
            runs.append(one_round(env, traced, token))
            print(
                f"round {n + 1}: " + ", ".join(f"{k} {v.rate:.0f} (p99 {v.p99_ms:.0f} ms)" for k, v in runs[-1].items())
            )
    finally:
        receiver.kill()

    # Each round's cases against that round's baseline (the mean of its two runs): the machine's speed drifts by
    # tens of percent within minutes, more than between neighbouring runs.
    bases = [(r["baseline (first)"].rate + r["baseline (last)"].rate) / 2 for r in runs]
    print(f"single POST, wrk 1 thread x {CONNECTIONS} connections, {MEASURE_S} s per case, {rounds} round(s)")
    print(f"{'case':<30} {'req/s':>22} {'p99 ms':>8} {'/baseline':>22} {'non-202':>8}")
    for name in ("baseline (first)", *CASES, "baseline (last)"):
        rates = [r[name].rate for r in runs]
        ratios = [r[name].rate / base for r, base in zip(runs, bases, strict=True)]
        print(
            f"{name:<30} {spread(rates, '.0f'):>22} {median([r[name].p99_ms for r in runs]):>8.2f}"
            f" {spread(ratios, '.2f'):>22} {sum(r[name].failed for r in runs):>8}"
        )
    for name in ("hub traced 10%", "hub traced 100%"):
        ratios = [r[name].rate / r["hub, recorders own process"].rate for r in runs]
        print(f"{name} / untraced (recorders own process): {spread(ratios, '.2f')}")
    for name in ("hub traced 10%, no recorder", "hub traced 100%, no recorder"):
        ratios = [r[name].rate / r["hub, no recorder"].rate for r in runs]
        print(f"{name} / untraced (no recorder): {spread(ratios, '.2f')}")
    base = median(bases)
    untraced = median([r["hub, recorders own process"].rate for r in runs])
    rate = {name: median([r[name].rate for r in runs]) for name in CASES}
    bench = "http_publish.py"
    record(bench, "single POST, recorders own process", untraced, "req/s", base, ">= 0.9")
    record(bench, "single POST, recorders in-process", rate["hub, recorders in-process"], "req/s", base, ">= 0.75")
    record(bench, "single POST traced 10% vs untraced", rate["hub traced 10%"], "req/s", untraced, ">= 0.9")
    record(bench, "single POST traced 100% vs untraced", rate["hub traced 100%"], "req/s", untraced, ">= 0.65")
    alone = rate["hub, no recorder"]
    record(bench, "traced 10% vs untraced, hub alone", rate["hub traced 10%, no recorder"], "req/s", alone, ">= 0.9")
    record(bench, "traced 100% vs untraced, hub alone", rate["hub traced 100%, no recorder"], "req/s", alone, ">= 0.65")
    if any(result.failed for r in runs for result in r.values()):
        sys.exit("some requests were not answered 202")


def spread(values: list[float], fmt: str) -> str:
    """The median, and the range over rounds when there are several."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


if __name__ == "__main__":
    main()
