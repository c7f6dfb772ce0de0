"""Historian reads through the hub app on real FerretDB (samples recorded from RabbitMQ): current values, raw
with `last` and boundaries, interpolated (wide CSV), plot, summary; checked parameters, scope and ACL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import orjson
import pytest

from tests.hub.conftest import MINT
from tests.hub.test_unitops import announced, control  # noqa: F401  (the fixture)
from tests.support.polling import eventually
from tributary_common.samples import Sample, SampleBatch
from tributary_hub.composition import Hub

T0 = datetime(2026, 2, 1, tzinfo=UTC)
KILN: dict[str, Any] = {
    "name": "kiln-7",
    "items": {
        "temp": {"source": "simulator", "params": {"signal": "sine", "period_s": 10}},
        "mode": {"source": "simulator", "params": {"signal": "step", "seed": 1}},
        "valve": {"source": "simulator", "params": {"signal": "step", "seed": 2}, "stepped": True},
        "idle": {"source": "simulator", "params": {"signal": "sine", "seed": 5}},
    },
    "record": False,
}
DATA: dict[str, list[tuple[int, Any, str | None]]] = {
    "temp": [(0, 0.0, "good"), (10, 10.0, None), (20, 20.0, "bad"), (40, 0.0, None)],
    "mode": [(5, "auto", None), (25, "manual", None)],
    "valve": [(0, 0, None), (30, 100, None)],
}


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
async def kiln(client: httpx.AsyncClient, control: Any, amqp_url: str) -> str:  # noqa: F811
    exchange, _ = control
    await announced(client, exchange)
    r = await client.post("/unitops", json=KILN)
    assert r.status_code == 201, r.text
    assert r.json()["items"]["valve"]["stepped"] is True and "stepped" not in r.json()["items"]["temp"]
    sids = {k: v["sid"] for k, v in r.json()["items"].items()}
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    samples = await channel.get_exchange("tributary.samples")
    for item, rows in DATA.items():
        batch = SampleBatch(
            sid=sids[item],
            source="simulator",
            samples=[Sample(t=T0 + timedelta(seconds=s), v=v, q=q) for s, v, q in rows],
        )
        await samples.publish(aio_pika.Message(batch.model_dump_json().encode()), routing_key=batch.routing_key)
    await connection.close()

    async def recorded() -> bool:
        # Buckets first, then each sid's current value: wait for both (the recorder acks after the last).
        r = await client.get("/unitops/kiln-7/samples", params={"limit": 100})
        current = await client.get("/unitops/kiln-7/samples:current")
        return len(r.json()["items"]) == 8 and sum(x["t"] is not None for x in current.json()["items"]) == 3

    await eventually(recorded, what="samples recorded", interval=0.05)
    return "kiln-7"


async def get(client: httpx.AsyncClient, path: str, accept: str | None = None, **params: Any) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    return await client.get(f"/unitops/kiln-7/{path}", params=params, headers=headers)


async def test_current_last_and_boundaries(client: httpx.AsyncClient, kiln: str) -> None:
    r = await get(client, "samples:current")
    assert r.status_code == 200, r.text
    current = {x["item"]: (x["t"], x["v"], x["q"]) for x in r.json()["items"]}
    assert current == {
        "temp": (at(40), 0.0, None),
        "mode": (at(25), "manual", None),
        "valve": (at(30), 100, None),
        "idle": (None, None, "no_data"),
    }
    r = await get(client, "samples:current", "text/csv", items="mode")
    assert list(csv.reader(io.StringIO(r.text)))[1][:2] == [at(25), "mode"]

    r = await get(client, "samples", last=2, items="temp,mode")
    assert [(x["item"], x["v"]) for x in r.json()["items"]] == [
        ("mode", "auto"),
        ("temp", 20.0),
        ("mode", "manual"),
        ("temp", 0.0),
    ]
    r = await get(client, "samples", last=1, items="temp", end=at(40))
    assert [x["v"] for x in r.json()["items"]] == [20.0]

    window = {"items": "temp", "start": at(15), "end": at(35)}
    inside = await get(client, "samples", **window)
    assert [x["v"] for x in inside.json()["items"]] == [20.0]
    outside = await get(client, "samples", boundary="outside", **window)
    assert [(x["t"], x["v"]) for x in outside.json()["items"]] == [(at(10), 10.0), (at(20), 20.0), (at(40), 0.0)]
    r = await get(client, "samples", boundary="interpolated", **window)
    assert [(x["t"], x["v"], x["q"]) for x in r.json()["items"]] == [
        (at(15), 15.0, None),
        (at(20), 20.0, "bad"),
        (at(35), 5.0, "bad"),
    ]
    wide = {"items": "temp", "start": at(5), "end": at(35), "boundary": "outside"}
    paged = await get(client, "samples", limit=1, **wide)
    assert [x["v"] for x in paged.json()["items"]] == [0.0, 10.0] and paged.json()["next"]
    rest = await get(client, "samples", cursor=paged.json()["next"], **wide)
    assert [x["v"] for x in rest.json()["items"]] == [20.0, 0.0]
    r = await get(client, "samples", "application/x-ndjson", boundary="outside", **window)
    assert [orjson.loads(line)["v"] for line in r.content.splitlines()] == [10.0, 20.0, 0.0]
    r = await get(client, "samples", "text/csv", boundary="outside", **window)
    assert [row[3] for row in csv.reader(io.StringIO(r.text))] == ["v", "10.0", "20.0", "0.0"]


async def test_interpolated_wide_table(client: httpx.AsyncClient, kiln: str) -> None:
    grid = {"items": "temp,mode,valve", "start": at(0), "end": at(40), "interval": "10s"}
    r = await get(client, "samples:interpolated", **grid)
    assert r.status_code == 200, r.text
    rows = r.json()["items"]
    assert [(x["t"], x["values"]["temp"], x["values"]["mode"], x["values"]["valve"]) for x in rows] == [
        (at(0), 0.0, None, 0),
        (at(10), 10.0, "auto", 0),
        (at(20), 20.0, "auto", 0),
        (at(30), 10.0, "manual", 100),
        (at(40), 0.0, "manual", 100),
    ]
    assert rows[0]["quality"] == {"temp": "good", "mode": "no_data", "valve": None}
    assert rows[3]["quality"]["temp"] == "bad"

    r = await get(client, "samples:interpolated", "text/csv", **grid)
    table = list(csv.reader(io.StringIO(r.text)))
    assert table[0] == ["t", "temp", "mode", "valve"]
    assert table[1] == [at(0), "0.0", "", "0"] and len(table) == 6
    r = await get(client, "samples:interpolated", "application/x-ndjson", **grid)
    assert [orjson.loads(line)["values"]["valve"] for line in r.content.splitlines()] == [0, 0, 0, 100, 100]

    # Listed times; the stepped valve holds 0 where a linear one would read 50.
    r = await get(client, "samples:interpolated", items="temp,valve", times=f"{at(-5)},{at(15)},{at(99)}")
    assert [(x["values"]["temp"], x["values"]["valve"]) for x in r.json()["items"]] == [
        (None, None),
        (15.0, 0),
        (0.0, 100),
    ]


async def test_plot_and_summary(client: httpx.AsyncClient, kiln: str) -> None:
    r = await get(client, "samples:plot", items="temp", start=at(0), end=at(40), intervals=2)
    assert r.status_code == 200, r.text
    plot = [(x["start"], x["end"], [(p["t"], p["v"]) for p in x["points"]]) for x in r.json()["items"]]
    assert plot == [
        (at(0), at(20), [(at(0), 0.0), (at(10), 10.0)]),
        (at(20), at(40), [(at(20), 20.0)]),
    ]
    r = await get(client, "samples:plot", "text/csv", items="temp,mode", start=at(0), end=at(40), intervals=1)
    lines = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["item"], x["v"]) for x in lines] == [
        ("temp", "0.0"),
        ("temp", "20.0"),
        ("mode", "auto"),
        ("mode", "manual"),
    ]

    calc = "count,min,max,mean,tavg,total,std,range"
    r = await get(client, "samples:summary", items="temp", start=at(0), end=at(80), interval="20s", calc=calc)
    assert r.status_code == 200, r.text
    got = [(x["count"], x["min"], x["max"], x["mean"], x["tavg"], x["total"], x["no_data"]) for x in r.json()["items"]]
    assert got == [
        (2, 0.0, 10.0, 5.0, 10.0, 200.0, False),
        (1, 20.0, 20.0, 20.0, 10.0, 200.0, False),
        (1, 0.0, 0.0, 0.0, 0.0, 0.0, False),
        (0, None, None, None, 0.0, 0.0, True),
    ]
    r = await get(client, "samples:summary", items="valve", start=at(0), end=at(40), calc="tavg,count")
    assert [(x["tavg"], x["count"]) for x in r.json()["items"]] == [(25.0, 2)]  # stepped: 0 for 30 s, 100 for 10 s
    r = await get(client, "samples:summary", "text/csv", items="temp", start=at(0), end=at(40), calc="count,max")
    assert list(csv.reader(io.StringIO(r.text))) == [
        ["item", "start", "end", "no_data", "count", "max"],
        ["temp", at(0), at(40), "false", "3", "20.0"],
    ]


BAD: list[tuple[str, dict[str, Any], int, str | None]] = [
    ("samples:summary", {"start": at(10), "end": at(0)}, 422, "/query/end"),
    ("samples:summary", {"start": at(0)}, 422, "/query/end"),
    ("samples:summary", {"start": at(0), "end": at(10), "interval": "0s"}, 422, "/query/interval"),
    ("samples:summary", {"start": at(0), "end": at(10), "interval": "1us"}, 422, "/query/interval"),
    ("samples:summary", {"start": at(0), "end": at(10), "calc": "count,median"}, 422, "/query/calc"),
    ("samples:summary", {"start": at(0), "end": at(10), "calc": "x" * 200}, 422, None),
    ("samples:summary", {"start": "yesterday", "end": at(10)}, 422, "/query/start"),
    ("samples:plot", {"start": at(0), "end": at(10), "intervals": 0}, 422, None),
    ("samples:plot", {"start": at(0), "end": at(10), "intervals": 20_000}, 422, "/query/intervals"),
    ("samples:plot", {"start": at(0), "end": at(10)}, 422, None),
    ("samples:interpolated", {"start": at(0), "end": at(10)}, 422, "/query/interval"),
    ("samples:interpolated", {"start": at(0), "end": at(86_400), "interval": "1ms"}, 422, "/query/interval"),
    ("samples:interpolated", {"times": f"{at(5)},{at(1)}"}, 422, "/query/times/1"),
    ("samples:interpolated", {"times": "2026-02-01T00:00:00"}, 422, "/query/times/0"),
    ("samples:interpolated", {"times": ",".join([at(i) for i in range(251)])}, 422, "/query/times"),
    ("samples", {"boundary": "around"}, 422, "/query/boundary"),
    ("samples", {"last": 0}, 422, None),
    ("samples", {"last": 10_001}, 422, None),
    ("samples:current", {"items": "temp,nope"}, 404, "/query/items"),
]


async def test_a_grid_computes_at_most_its_limit_of_values(client: httpx.AsyncClient, hub: Hub, kiln: str) -> None:
    """Points × items: 100,000 points of each of 1,000 items were 10⁸ values, minutes of CPU for one request."""
    hub.settings.grid_max_values = hub.unitop_samples.grid_max_values = 5
    window = {"start": at(0), "end": at(10)}
    reads: list[tuple[str, dict[str, Any], str]] = [
        ("samples:interpolated", {**window, "interval": "10s"}, "/query/interval"),  # 2 points × 4 items
        ("samples:interpolated", {"times": f"{at(0)},{at(5)}"}, "/query/times"),
        ("samples", {**window, "interval_s": 5}, "/query/interval_s"),
    ]
    for path, params, loc in reads:
        r = await get(client, path, **params)
        assert r.status_code == 422, (path, params, r.text)
        assert r.json()["error"]["code"] == "too_many_points"
        assert [d["loc"] for d in r.json()["error"]["details"]] == [loc], r.text
        assert "8 values, over the limit of 5" in r.json()["error"]["message"], r.text
        r = await get(client, path, items="temp,valve", **params)  # 4 values
        assert r.status_code == 200, (path, params, r.text)
        assert len(r.json()["items"]) == 2


async def test_bad_parameters_are_4xx_with_their_place(client: httpx.AsyncClient, kiln: str) -> None:
    for path, params, status, loc in BAD:
        r = await client.get(f"/unitops/kiln-7/{path}", params=params)
        assert r.status_code == status, (path, params, r.text)
        if loc is not None:
            assert loc in [d["loc"] for d in r.json()["error"]["details"]], (path, params, r.text)


async def test_the_edges_of_time_are_answered(client: httpx.AsyncClient, kiln: str) -> None:
    first, last = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"
    r = await get(client, "samples:interpolated", items="temp", times=f"{first},{last}")
    assert [x["values"]["temp"] for x in r.json()["items"]] == [None, 0.0]
    r = await get(client, "samples", items="temp", start=first, end=last, boundary="outside")
    assert [x["v"] for x in r.json()["items"]] == [0.0, 10.0, 20.0, 0.0]
    r = await get(client, "samples", items="temp", start=first, end=last, boundary="interpolated")
    assert r.status_code == 200 and r.json()["items"][-1]["v"] == 0.0
    r = await get(client, "samples:plot", items="temp", start=first, end=last, intervals=3)
    assert sum(len(x["points"]) for x in r.json()["items"]) == 3  # first, last and max: 0, 20, 0 at 40
    r = await get(
        client, "samples:summary", items="temp", start=first, end=last, interval="999999999999d", calc="count"
    )
    assert [x["count"] for x in r.json()["items"]] == [4]


async def test_scope_acl_and_accept(client: httpx.AsyncClient, kiln: str) -> None:
    window = {"start": at(0), "end": at(40)}
    reads: dict[str, dict[str, Any]] = {
        "samples:current": {},
        "samples:plot": {**window, "intervals": 4},
        "samples:summary": window,
        "samples:interpolated": {**window, "interval": "1s"},
        "samples": {**window, "boundary": "outside"},
    }
    for path, params in reads.items():
        url = f"/unitops/kiln-7/{path}"
        assert (await client.get(url, params=params)).status_code == 200
        r = await client.get(url, params=params, headers=MINT.bearer(["unitops:read"], unitops=["pump-*"]))
        assert r.status_code == 403, r.text
        assert (await client.get(url, params=params, headers=MINT.bearer(["topics:read"]))).status_code == 403
        assert (await client.get(url, params=params, headers={"Authorization": ""})).status_code == 401
    assert (await client.get("/unitops/nope/samples:current")).status_code == 404
    r = await get(client, "samples:current", "application/xml")
    assert r.status_code == 406
    r = await get(client, "samples", last=20, items="temp,mode,valve,idle")
    assert r.status_code == 200


async def test_a_stepped_flag_that_is_not_a_boolean_is_refused_by_name(client: httpx.AsyncClient, kiln: str) -> None:
    for bad in ("yes", "true", 1, 0, None, [True], {"v": True}):
        item = {**KILN["items"]["valve"], "stepped": bad}
        body = {**KILN, "name": "kiln-8", "items": {"valve": item}}
        r = await client.post("/unitops", json=body)
        assert r.status_code == 422, (bad, r.text)
        assert "/items/valve/stepped" in [d["loc"] for d in r.json()["error"]["details"]], (bad, r.text)
        r = await client.put("/unitops/kiln-7", json={**body, "name": "kiln-7"})
        assert r.status_code == 422, (bad, r.text)
        assert "/items/valve/stepped" in [d["loc"] for d in r.json()["error"]["details"]], (bad, r.text)
    assert (await client.get("/unitops/kiln-8")).status_code == 404
    assert (await client.get("/unitops/kiln-7")).json()["items"]["valve"]["stepped"] is True  # unchanged


async def test_historian_reads_check_in_one_order(client: httpx.AsyncClient, kiln: str) -> None:
    """ACL, then parameters, then the items (the shared steps of `api/historian`): a forbidden unitop is 403
    whatever its parameters (those the route checks itself; FastAPI's own bounds come first); bad parameters are
    422 even with an unknown item; then an unknown item is 404."""
    window = {"start": at(0), "end": at(40)}
    reads: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "samples:plot": ({**window, "intervals": 4}, {"start": at(40), "end": at(0), "intervals": 4}),
        "samples:summary": ({**window, "interval": "10s"}, {**window, "interval": "1us"}),  # too many
        "samples:interpolated": ({**window, "interval": "10s"}, {"start": at(40), "end": at(0), "interval": "1s"}),
    }
    other = MINT.bearer(["unitops:read"], unitops=["pump-*"])
    for path, (good, bad) in reads.items():
        url = f"/unitops/kiln-7/{path}"
        for params in (good, bad):
            assert (await client.get(url, params={**params, "items": "nope"}, headers=other)).status_code == 403
        r = await client.get(url, params={**bad, "items": "nope"})
        assert r.status_code == 422, (path, r.text)
        assert r.json()["error"]["details"][0]["loc"].startswith("/query/"), r.text
        r = await client.get(url, params={**good, "items": "temp,nope"})
        assert r.status_code == 404 and r.json()["error"]["details"][0]["loc"] == "/query/items", r.text
        r = await client.get(url, params={**good, "items": "temp"}, headers={"Accept": "text/csv"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        kind = path.split(":")[1]
        assert f"kiln-7-{kind}.csv" in r.headers.get("content-disposition", ""), r.headers
