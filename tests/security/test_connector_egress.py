"""Connectors reach only what an operator allowed (issue 10, items 3 and 4), against real processes.

http/mqtt: without a `TRIBUTARY_HTTP_ALLOW` entry, loopback, link-local, private, multicast, reserved and
unspecified addresses are refused - a 422 at unitop creation when the hub can know (a literal address, a name
that resolves to one), a counted, logged refusal in ingest when the hub is bypassed (demand sent straight over
AMQP), checked again on every redirect; bodies over the cap and polls under the floor are refused too.
csv: served only under `TRIBUTARY_CSV_ROOTS` (not announced without it), real paths (symlinks resolved), no
hidden files.

Failed on the code before: the RabbitMQ management API and /etc/passwd were read and their values published, a
redirect out of the allowed prefix was followed, an interval of 0.5 s was accepted.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ingest.helpers import sub
from tests.support.bus import Bus, bus
from tests.support.polling import eventually
from tests.support.stack import Stack, run_stack

RABBIT_MGMT = {
    "url": "http://127.0.0.1:15672/api/overview",
    "headers": {"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="},
    "pointer": "/object_totals/queues",
}
BODY_CAP = 16384


@dataclass
class Target:
    """A local HTTP server: `/allowed/...` is allow-listed by prefix, `/private/...` is not."""

    port: int
    requests: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    state = Target(0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            routes: dict[str, tuple[int, dict[str, str], bytes]] = {
                "/allowed/value": (200, {}, json.dumps({"v": 42}).encode()),
                "/allowed/big": (200, {}, json.dumps({"v": 1, "pad": "x" * (4 * BODY_CAP)}).encode()),
                "/allowed/to-private": (302, {"Location": f"{state.base}/private/secret"}, b""),
                "/allowed/to-metadata": (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""),
                "/allowed/to-localhost": (302, {"Location": f"http://localhost:{state.port}/allowed/value"}, b""),
                "/private/secret": (200, {}, json.dumps({"v": 666}).encode()),
            }
            status, headers, body = routes.get(self.path, (404, {}, b""))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def csv_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = Path(tmp_path_factory.mktemp("csv-root"))
    outside = Path(tmp_path_factory.mktemp("csv-outside"))
    (outside / "secret.csv").write_text("time,v\n2026-01-01T00:00:05Z,999\n")
    data = root / "data"
    data.mkdir()
    (data / "a.csv").write_text("time,v\n2026-01-01T00:00:01Z,1\n2026-01-01T00:00:02Z,2\n")
    (data / ".hidden.csv").write_text("time,v\n2026-01-01T00:00:03Z,666\n")
    (data / "leak.csv").symlink_to(outside / "secret.csv")  # a file inside a root pointing outside it
    (root / "etc-link").symlink_to("/etc")  # a folder inside a root pointing outside it
    hidden = root / ".secret"
    hidden.mkdir()
    (hidden / "s.csv").write_text("time,v\n2026-01-01T00:00:04Z,777\n")
    return root


@pytest.fixture(scope="module")
def stack(target: Target, csv_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"TRIBUTARY_HTTP_ALLOW": f"{target.base}/allowed/"}
    ingest = {"TRIBUTARY_CSV_ROOTS": str(csv_root), "TRIBUTARY_HTTP_MAX_BODY_BYTES": str(BODY_CAP)}
    logs = Path(tmp_path_factory.mktemp("egress-logs"))
    with run_stack(logs, ("hub", "ingest"), env=env, per_service={"ingest": ingest}) as s:
        yield s


@pytest.fixture
async def hub(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.hub_url, headers=headers, timeout=20) as client:

        async def announced() -> bool:
            names = {s["name"] for s in (await client.get("/sources")).json()["items"] if s["instances"]}
            return {"http", "mqtt", "csv"} <= names

        await eventually(announced, what="ingest's sources announced to the hub")
        yield client


@pytest.fixture
async def amqp(stack: Stack) -> AsyncIterator[Bus]:
    async with bus(stack.env["TRIBUTARY_AMQP_URL"]) as b:
        yield b


def unitop(name: str, source: str, params: dict[str, Any], record: bool = False) -> dict[str, Any]:
    return {"name": name, "items": {"x": {"source": source, "params": params}}, "record": record}


def details(r: httpx.Response) -> dict[str, str]:
    return {d["loc"]: d["msg"] for d in r.json()["error"]["details"]}


async def ingest_status(stack: Stack, source: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as client:
        body = (await client.get(f"{stack.url('ingest')}/status")).json()
    return dict(body["sources"].get(source) or {})


async def refused_count(stack: Stack, source: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{stack.url('ingest')}/metrics")).text
    line = f'tributary_ingest_errors_total{{kind="refused",source="{source}"}}'
    return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))


async def failing(stack: Stack, source: str, sid: str) -> str:
    return str((await ingest_status(stack, source)).get("failing", {}).get(sid) or "")


# -- http: 422 at creation ---------------------------------------------------------------------------------------


async def test_rabbitmq_management_example_is_refused_at_creation(hub: httpx.AsyncClient) -> None:
    r = await hub.post("/unitops", json=unitop("mgmt", "http", RABBIT_MGMT, record=True))
    assert r.status_code == 422, r.text
    msg = details(r)["/items/x/params/url"]
    assert "127.0.0.1" in msg and "loopback" in msg and "TRIBUTARY_HTTP_ALLOW" in msg
    assert (await hub.get("/unitops/mgmt")).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:15672/api/overview",  # a name that resolves to loopback
        "http://2130706433:15672/api/overview",
        "http://0x7f.1:15672/api/overview",
        "http://[::ffff:127.0.0.1]:15672/api/overview",
        "http://[::1]:15672/api/overview",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://0.0.0.0:15672/",
        "http://224.0.0.1/",
    ],
)
async def test_odd_spellings_and_private_addresses_are_refused_at_creation(hub: httpx.AsyncClient, url: str) -> None:
    name = f"odd-{abs(hash(url)) % 10**8}"
    r = await hub.post("/unitops", json=unitop(name, "http", {"url": url, "pointer": "/v"}))
    assert r.status_code == 422, r.text
    assert "/items/x/params/url" in details(r)


async def test_mqtt_broker_on_loopback_is_refused_at_creation(hub: httpx.AsyncClient) -> None:
    r = await hub.post("/unitops", json=unitop("mq", "mqtt", {"host": "127.0.0.1", "topic": "t"}))
    assert r.status_code == 422, r.text
    assert "loopback" in details(r)["/items/x/params/host"]


async def test_poll_interval_under_the_floor_is_refused(hub: httpx.AsyncClient, target: Target) -> None:
    r = await hub.post(
        "/unitops",
        json=unitop("fast", "http", {"url": f"{target.base}/allowed/value", "pointer": "/v", "interval_s": 0.5}),
    )
    assert r.status_code == 422, r.text
    assert "/items/x/params/interval_s" in details(r)


async def test_allow_listed_loopback_server_is_recorded(hub: httpx.AsyncClient, target: Target) -> None:
    params = {"url": f"{target.base}/allowed/value", "pointer": "/v", "interval_s": 1}
    r = await hub.post("/unitops", json=unitop("allowed", "http", params, record=True))
    assert r.status_code == 201, r.text

    async def recorded() -> bool:
        rows = (await hub.get("/unitops/allowed/samples")).json()["items"]
        return any(row["v"] == 42 for row in rows)

    await eventually(recorded, timeout=40, what="the allowed server's value recorded")
    assert (await hub.delete("/unitops/allowed")).status_code == 204


# -- http: the hub bypassed - ingest refuses, counts, records nothing ---------------------------------------------


async def test_ingest_refuses_when_the_hub_is_bypassed(stack: Stack, target: Target, amqp: Bus) -> None:
    before = await refused_count(stack, "http")
    mgmt = sub("http", RABBIT_MGMT)
    by_name = sub("http", {"url": f"http://localhost:{target.port}/allowed/value", "pointer": "/v"})
    metadata = sub("http", {"url": "http://169.254.169.254/latest/meta-data/", "pointer": "/v"})
    good = sub("http", {"url": f"{target.base}/allowed/value", "pointer": "/v", "interval_s": 1})
    amqp.demand("http", [mgmt, by_name, metadata, good])
    await eventually(lambda: amqp.values(good.sid), what="the allowed subscription read (the source carries on)")
    for s, needle in ((mgmt, "loopback"), (by_name, "loopback"), (metadata, "link-local")):
        reason = await eventually(partial(failing, stack, "http", s.sid), what=f"{s.params} refused")
        assert needle in reason and "TRIBUTARY_HTTP_ALLOW" in reason, reason
    assert await refused_count(stack, "http") >= before + 3
    assert not amqp.values(mgmt.sid) and not amqp.values(by_name.sid) and not amqp.values(metadata.sid)
    assert not any(p.startswith("/private") for p in target.requests)


async def test_redirects_are_checked_on_every_hop(stack: Stack, target: Target, amqp: Bus) -> None:
    hops = {
        "to-private": "/private/secret: 127.0.0.1 is a loopback",  # same server, outside the allowed prefix
        "to-localhost": "loopback",  # the same server by a name that is not allow-listed
        "to-metadata": "link-local",
    }
    subs = {k: sub("http", {"url": f"{target.base}/allowed/{k}", "pointer": "/v"}) for k in hops}
    amqp.demand("http", list(subs.values()))
    for k, needle in hops.items():
        reason = await eventually(partial(failing, stack, "http", subs[k].sid), what=f"redirect {k} refused")
        assert needle in reason, reason
    assert "/private/secret" not in target.requests
    assert all(not amqp.values(s.sid) for s in subs.values())


async def test_body_over_the_cap_is_refused(stack: Stack, target: Target, amqp: Bus) -> None:
    big = sub("http", {"url": f"{target.base}/allowed/big", "pointer": "/v"})
    amqp.demand("http", [big])
    reason = await eventually(lambda: failing(stack, "http", big.sid), what="the big answer refused")
    assert str(BODY_CAP) in reason, reason
    assert not amqp.values(big.sid)


async def test_mqtt_broker_on_loopback_is_refused_in_ingest(stack: Stack, amqp: Bus) -> None:
    before = await refused_count(stack, "mqtt")
    s = sub("mqtt", {"host": "localhost", "topic": "t/#"})
    amqp.demand("mqtt", [s])
    reason = await eventually(lambda: failing(stack, "mqtt", s.sid), what="the mqtt broker refused")
    assert "loopback" in reason, reason
    assert await refused_count(stack, "mqtt") >= before + 1


# -- csv ---------------------------------------------------------------------------------------------------------


def csv_params(folder: Path | str, **kw: Any) -> dict[str, Any]:
    return {"folder": str(folder), "value_column": "v", "poll_interval_s": 0.2, **kw}


async def test_csv_reads_only_real_visible_files_under_the_roots(stack: Stack, csv_root: Path, amqp: Bus) -> None:
    passwd = sub(
        "csv", {"folder": "/etc", "pattern": "passwd", "delimiter": ":", "value_column": "x", "time_column": "0"}
    )
    via_link = sub("csv", csv_params(csv_root / "etc-link", pattern="passwd", delimiter=":", time_column="0"))
    dotted = sub("csv", csv_params(csv_root / ".secret"))
    data = sub("csv", csv_params(csv_root / "data"))  # a.csv, .hidden.csv, leak.csv -> a file outside the root
    dotdot = sub("csv", csv_params(f"{csv_root}/data/../../../etc", pattern="passwd"))
    before = await refused_count(stack, "csv")
    amqp.demand("csv", [passwd, via_link, dotted, data, dotdot])
    await eventually(lambda: len(amqp.values(data.sid)) >= 2, what="the visible rows of a.csv")
    for s, needle in ((passwd, "TRIBUTARY_CSV_ROOTS"), (via_link, "TRIBUTARY_CSV_ROOTS"), (dotted, "hidden")):
        reason = await eventually(partial(failing, stack, "csv", s.sid), what=f"{s.params['folder']} refused")
        assert needle in reason, reason
    status = await ingest_status(stack, "csv")
    assert dotdot.sid in status["rejected"] and "'..'" in status["rejected"][dotdot.sid], status
    await asyncio.sleep(1.0)  # a few more polls of the data folder
    assert [v for _, v in amqp.values(data.sid)] == [1, 2]  # not the dot file, not the file outside the root
    assert not amqp.values(passwd.sid) and not amqp.values(via_link.sid) and not amqp.values(dotted.sid)
    assert await refused_count(stack, "csv") >= before + 3  # the three folders (the read fails, backs off)
    # The symlinked file is skipped with a logged warning; the rest of its folder is read.
    log = (stack.logs / "ingest.log").read_text(errors="replace")
    assert "leak.csv: refused" in log and "outside TRIBUTARY_CSV_ROOTS" in log


async def test_csv_folder_with_dotdot_is_refused_at_creation(hub: httpx.AsyncClient, csv_root: Path) -> None:
    r = await hub.post("/unitops", json=unitop("dots", "csv", csv_params(f"{csv_root}/data/../../../etc")))
    assert r.status_code == 422, r.text
    assert "/items/x/params/folder" in details(r)


async def test_csv_is_not_served_without_roots(target: Target, tmp_path: Path) -> None:
    passwd = {"folder": "/etc", "pattern": "passwd", "delimiter": ":", "value_column": "x", "time_column": "0"}
    with run_stack(tmp_path, ("hub", "ingest")) as s:
        headers = {"Authorization": f"Bearer {s.token}"}
        async with httpx.AsyncClient(base_url=s.hub_url, headers=headers, timeout=20) as client:

            async def announced() -> set[str]:
                return {x["name"] for x in (await client.get("/sources")).json()["items"] if x["instances"]}

            await eventually(lambda: _has(announced(), "http"), what="ingest's sources announced")
            assert "csv" not in await announced()
            r = await client.post("/unitops", json=unitop("pw", "csv", passwd, record=True))
            assert r.status_code == 422 and "has not been announced" in details(r)["/items/x/source"], r.text
        async with bus(s.env["TRIBUTARY_AMQP_URL"]) as b:
            p = sub("csv", passwd)
            b.demand("csv", [p])
            await asyncio.sleep(3.0)
            assert await ingest_status(s, "csv") == {}  # not served at all
            assert not b.values(p.sid)


async def _has(names: Awaitable[set[str]], name: str) -> bool:
    return name in await names
