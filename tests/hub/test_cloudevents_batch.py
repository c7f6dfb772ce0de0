"""`POST /topics/{t}/events:batch` with `application/cloudevents-batch+json` (issue 11): a JSON array of structured
CloudEvents envelopes, each validated like the single `application/cloudevents+json` envelope (`type` is the
topic, `specversion` 1.0, an `id` and a `source`), all or nothing. Against the hub as a real process.

Failed before the fix: the envelopes were read as `{data, subject, id, source}` items, so every one was a 422
"Extra inputs are not permitted" for `specversion` and `type`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.stack import Stack, run_stack

BATCH = {"Content-Type": "application/cloudevents-batch+json"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"TRIBUTARY_RECORDER_BATCH_MAX_DELAY_MS": "20"}
    with run_stack(tmp_path_factory.mktemp("ce-batch"), services=("hub",), env=env) as s:
        yield s


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30) as c:
        yield c


@pytest.fixture
def topic(http: httpx.Client) -> str:
    name = f"ce{uuid.uuid4().hex[:10]}"
    schema = {"type": "object", "properties": {"v": {"type": "number"}}, "required": ["v"]}
    r = http.post("/topics", json={"name": name, "schema": schema})
    assert r.status_code == 201, r.text
    return name


def envelope(topic: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"ev-{n}",
        "source": "/plant1/gateway",
        "type": topic,
        "subject": f"line{n}",
        "datacontenttype": "application/json",
        "data": {"v": n},
        **extra,
    }


def history(http: httpx.Client, topic: str, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        items: list[dict[str, Any]] = http.get(f"/topics/{topic}/events", params={"limit": 100}).json()["items"]
        if len(items) >= want or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


def test_a_batch_of_envelopes_is_published_and_recorded(http: httpx.Client, topic: str) -> None:
    batch = [envelope(topic, 1), envelope(topic, 2, time="2020-01-01T00:00:00Z", dataschema="ignored")]
    r = http.post(f"/topics/{topic}/events:batch", json=batch, headers=BATCH)
    assert r.status_code == 202, r.text
    assert r.json()["ids"] == ["ev-1", "ev-2"]
    items = history(http, topic, 2)
    assert [(e["id"], e["subject"], e["source"], e["data"]) for e in items] == [
        ("ev-1", "line1", "/plant1/gateway", {"v": 1}),
        ("ev-2", "line2", "/plant1/gateway", {"v": 2}),
    ]
    # `time` and `dataschema` are the hub's, as for the single envelope.
    assert all(e["time"] > "2020-01-02" and e["dataschema"] == r.json()["dataschema"] for e in items)
    # The same rules as a single envelope: resending an id does not duplicate it.
    assert http.post(f"/topics/{topic}/events:batch", json=batch, headers=BATCH).status_code == 202
    time.sleep(1)
    assert len(history(http, topic, 2)) == 2


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"type": "other-topic"}, "/1/type"),
        ({"specversion": "0.3"}, "/1/specversion"),
        ({"id": None}, "/1/id"),
        ({"id": "x" * 10_000}, "/1/id"),
        ({"source": ""}, "/1/source"),
        ({"datacontenttype": "text/xml"}, "/1/datacontenttype"),
        ({"subject": "a..b"}, "/1/subject"),
        ({"data": {"v": "hot"}}, "/1/data/v"),
        ({"unknown": 1}, "/1/unknown"),
    ],
)
def test_an_invalid_envelope_refuses_the_whole_batch_naming_it(
    http: httpx.Client, topic: str, change: dict[str, Any], loc: str
) -> None:
    bad = envelope(topic, 2, **change)
    r = http.post(f"/topics/{topic}/events:batch", json=[envelope(topic, 1), bad], headers=BATCH)
    assert r.status_code == 422, r.text
    assert [d["loc"] for d in r.json()["error"]["details"]] == [loc], r.text
    time.sleep(0.3)
    assert history(http, topic, 0) == []


def test_missing_envelope_attributes_and_a_non_array_are_422(http: httpx.Client, topic: str) -> None:
    # Plain `{data}` items are not envelopes under this content type.
    r = http.post(f"/topics/{topic}/events:batch", json=[{"data": {"v": 1}}], headers=BATCH)
    assert r.status_code == 422, r.text
    assert {d["loc"] for d in r.json()["error"]["details"]} >= {"/0/specversion", "/0/id", "/0/type"}
    r = http.post(f"/topics/{topic}/events:batch", json=envelope(topic, 1), headers=BATCH)
    assert r.status_code == 422, r.text
    r = http.post(f"/topics/{topic}/events:batch", json=[7], headers=BATCH)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "/0", r.text
    # The plain JSON batch is unchanged.
    r = http.post(f"/topics/{topic}/events:batch", json=[{"data": {"v": 1}}])
    assert r.status_code == 202, r.text
