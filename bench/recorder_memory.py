"""The events recorder's memory with a backlog of the largest events clients may send, under
`TRIBUTARY_RECORDER_EVENT_MEMORY_MB` (the prefetch, and the batch with it, lowered until that many events of
`TRIBUTARY_MAX_EVENT_BYTES` fit): the peak RSS of `tributary-hub recorder` draining the backlog, above its RSS once
ready, against the budget.

Each case: the hub (`serve`, recorders off) takes `--events` events of ~`--kib` KiB each (a string field) by single
POSTs into the recorder's queue, on a FerretDB of the bench's own; then `tributary-hub recorder` starts with the
case's budget and, once it is ready, that FerretDB is stopped (SIGSTOP) for `--stall` seconds: the recorder holds
what its prefetch lets the broker send, as it would while its database is slow or away. Its RSS is read at the
end of the stall, and its peak (`VmHWM`, /proc) once everything is recorded. The first case is the default
budget (4,096 MiB: the prefetch of 4,000 stands), the others the budgets given. What it shows: how much of the process a held event
costs beyond its body (decoded, converted, encoded for the write), which is what the Kubernetes recorder's
`TRIBUTARY_RECORDER_EVENT_MEMORY_MB` is derived from (deploy/README.md, "Recorder memory").
`.venv/bin/python bench/recorder_memory.py` (about a minute at the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_publish import SECRET, hub  # noqa: E402
from bench.recorder_rate import recorded  # noqa: E402
from tests.support import platform  # noqa: E402
from tests.support.ferretdb import PrivateFerretDB  # noqa: E402
from tests.support.processes import ServiceProcess  # noqa: E402
from tributary_common.auth import mint_token  # noqa: E402
from tributary_hub.recorders import memory_window  # noqa: E402

SCHEMA = {"type": "object", "required": ["blob"], "properties": {"blob": {"type": "string"}}}
MiB = 1024 * 1024


async def publish(url: str, token: str, topic: str, events: int, kib: int) -> None:
    base = url.removesuffix("/topics/bench/events")
    blob = "x" * (kib * 1024)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        (await http.post("/topics", json={"name": topic, "schema": SCHEMA})).raise_for_status()
        for n in range(events):
            answer = await http.post(f"/topics/{topic}/events", json={"data": {"blob": blob}, "subject": f"s{n % 5}"})
            answer.raise_for_status()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


async def drain(
    env: dict[str, str], database: PrivateFerretDB, events: int, stall_s: float, timeout: float
) -> tuple[float, float, float]:
    """(RSS once ready, RSS at the end of the database's stall, peak RSS) of a recorder process draining the
    queue, in MiB."""
    port = platform.free_port()
    log = Path(tempfile.mkdtemp()) / "recorder.log"
    recorder = ServiceProcess("tributary_hub", ["recorder"], {**env, "TRIBUTARY_HTTP_PORT": str(port)}, log, None)
    recorder.start()
    assert recorder.proc is not None and database.proc is not None
    pid = recorder.proc.pid
    try:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the recorder was not ready in {timeout:.0f} s (log: {log})")
                await asyncio.sleep(0.05)
            ready = status_kib(pid, "VmRSS") / 1024
            database.proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(stall_s)
                stalled = status_kib(pid, "VmRSS") / 1024
            finally:
                database.proc.send_signal(signal.SIGCONT)
            while recorded(await http.get("/metrics")) < events:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not everything recorded in {timeout:.0f} s (log: {log})")
                await asyncio.sleep(0.1)
            return ready, stalled, status_kib(pid, "VmHWM") / 1024
    finally:
        recorder.terminate()


async def main(args: argparse.Namespace) -> None:
    platform.require_services()
    token = mint_token(SECRET, subject="bench")
    print(f"events recorder memory: {args.events} events of ~{args.kib} KiB each, TRIBUTARY_MAX_EVENT_BYTES=1 MiB,")
    print(f"its database stopped for {args.stall:.0f} s once it is ready")
    print(f"{'budget MiB':>10} {'prefetch':>8} {'ready MiB':>10} {'stalled MiB':>12} {'held MiB':>9} {'peak MiB':>9}")
    for n, budget in enumerate([4096, *args.budgets]):
        with tempfile.TemporaryDirectory() as data:
            database = PrivateFerretDB(Path(data) / "db")
            (Path(data) / "db").mkdir()
            database.start()
            try:
                with platform.isolated_env(f"bench-recmem-{n}", SECRET) as isolated:
                    env = {**isolated, "TRIBUTARY_LOG_LEVEL": "WARNING", "OTEL_SDK_DISABLED": "true"}
                    env["TRIBUTARY_MONGODB_URL"] = database.url
                    with hub(env, separate_recorders=True, recorder=False) as url:
                        await publish(url, token, f"mem{n}", args.events, args.kib)
                    env["TRIBUTARY_RECORDER_EVENT_MEMORY_MB"] = str(budget)
                    ready, stalled, peak = await drain(env, database, args.events, args.stall, args.timeout)
            finally:
                database.stop()
        prefetch, _ = memory_window(4000, 2000, budget * MiB, MiB)  # the recorder's own arithmetic
        print(f"{budget:>10} {prefetch:>8} {ready:>10.0f} {stalled:>12.0f} {stalled - ready:>9.0f} {peak:>9.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--kib", type=int, default=900)
    parser.add_argument("--budgets", type=int, nargs="*", default=[64, 192])
    parser.add_argument("--stall", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    asyncio.run(main(parser.parse_args()))
