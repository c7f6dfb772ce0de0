"""Dead letters for admins (issue 11), against the hub as real processes (`serve` without recorders, then a
`recorder` process), the real broker and FerretDB.

2,000 messages that are not CloudEvents are left on the events recorder queue; at the recorder's next start they
are all dead-lettered and recorded (none dropped), its log holds a bounded number of lines about them (not
2,000), GET /deadletters lists them in cursor pages, and replaying one with a corrected body records the event.
Then the routes' edges: replay that fails again, truncated bodies, non-replayable exchanges, delete and purge,
the per-reason metric, and hostile ids, filters, cursors and callers (always a 4xx, never a 500).

Failed before: no recorder consumed tributary.deadletters, /deadletters was a 404, and the recorder logged one
ERROR line per dead-lettered message.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import aio_pika
import httpx
import orjson
import pytest

from tests.support import platform
from tests.support.polling import wait_for
from tests.support.processes import ServiceProcess
from tests.support.stack import Stack, run_stack

N = 2000
BODY_MAX = 8192
EVENTS_QUEUE = "tributary.hub.recorder.events"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "TRIBUTARY_RECORDER_BATCH_MAX_DELAY_MS": "20",
        "TRIBUTARY_DEAD_LETTER_BODY_MAX_BYTES": str(BODY_MAX),
        "TRIBUTARY_DEAD_LETTER_LOG_INTERVAL_S": "3600",
    }
    logs = tmp_path_factory.mktemp("deadletters")
    with run_stack(
        logs, services=("hub",), env=env, per_service={"hub": {"TRIBUTARY_RECORDERS_ENABLED": "false"}}
    ) as s:
        yield s


async def publish_raw(url: str, messages: Sequence[tuple[str, str, bytes, dict[str, Any] | None]]) -> None:
    """(exchange, routing key, body, headers) straight to the broker, past every check of the hub's API."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}
        for exchange, key, body, headers in messages:
            if exchange not in exchanges:
                exchanges[exchange] = await channel.get_exchange(exchange)
            await exchanges[exchange].publish(
                aio_pika.Message(body, headers=headers, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), key
            )


@pytest.fixture(scope="module")
def recorder(stack: Stack) -> Iterator[ServiceProcess]:
    """2,000 bad messages wait on the recorder queue (the serve process declared it) before the recorder starts."""
    bad = [("tributary.events", "garbage.a", b"\xff not json %d" % i, None) for i in range(N // 2)]
    bad += [
        ("tributary.events", "garbage.b", orjson.dumps({"not": "a cloudevent", "n": i}), None) for i in range(N // 2)
    ]
    asyncio.run(publish_raw(stack.env["TRIBUTARY_AMQP_URL"], bad))
    assert wait_for(
        lambda: (platform.queue_info(stack.vhost, EVENTS_QUEUE) or {}).get("messages") == N,
        timeout=20,
        what="2,000 messages waiting",
    )
    port = platform.free_port()
    env = {**stack.env, "TRIBUTARY_HTTP_PORT": str(port)}
    proc = ServiceProcess("tributary_hub", ["recorder"], env, stack.logs / "recorder.log", port)
    proc.start(timeout=60)
    try:
        yield proc
    finally:
        proc.terminate()


@pytest.fixture
def http(stack: Stack, recorder: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30) as c:
        yield c


def list_all(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = http.get("/deadletters", params={**params, "limit": 500, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next"]
        if cursor is None:
            return items


def wait_letters(http: httpx.Client, want: int, timeout: float = 60, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal found
        found = list_all(http, **params)
        return len(found) >= want

    wait_for(enough, timeout=timeout, interval=0.5, what=f"{want} dead letters ({params})")
    return found


def new_topic(http: httpx.Client) -> str:
    name = f"dl{uuid.uuid4().hex[:10]}"
    assert http.post("/topics", json={"name": name, "schema": {"type": "object"}}).status_code == 201
    return name


def test_a_queue_of_2000_bad_messages_is_dead_lettered_listed_and_one_replayed_after_a_fix(
    stack: Stack, http: httpx.Client, recorder: ServiceProcess
) -> None:
    letters = wait_letters(http, N, queue=EVENTS_QUEUE)
    assert len(letters) == N and len({d["id"] for d in letters}) == N
    # The management API's figures lag by a few seconds.
    wait_for(
        lambda: (platform.queue_info(stack.vhost, EVENTS_QUEUE) or {}).get("messages") == 0,
        timeout=30,
        what="the recorder queue emptied",
    )
    by_reason = {r: sum(d["reason"] == r for d in letters) for r in ("undecodable", "not_a_cloudevent")}
    assert by_reason == {"undecodable": N // 2, "not_a_cloudevent": N // 2}
    assert all(d["exchange"] == "tributary.events" and d["first_failure"] and d["replays"] == 0 for d in letters)
    assert {d["routing_key"] for d in letters} == {"garbage.a", "garbage.b"}
    times = [(d["time"], d["id"]) for d in letters]
    assert times == sorted(times)  # cursor pages in position order, none twice

    # A bounded log: the recorder's lines about these messages, not one per message.
    log_lines = [line for line in recorder.log_path.read_text().splitlines() if "dead" in line]
    print(f"\nrecorder log lines about {N} dead letters: {len(log_lines)}")
    assert 1 <= len(log_lines) <= 10, log_lines

    # Filters.
    assert len(list_all(http, reason="undecodable", queue=EVENTS_QUEUE)) == N // 2
    assert list_all(http, queue="no.such.queue") == []
    mid = letters[N // 2]["time"]
    assert len(list_all(http, queue=EVENTS_QUEUE, end=mid)) + len(list_all(http, queue=EVENTS_QUEUE, start=mid)) == N

    # One letter in full, then fixed and replayed: the event is recorded, the letter marked.
    one = next(d for d in letters if d["reason"] == "not_a_cloudevent")
    shown = http.get(f"/deadletters/{one['id']}").json()
    assert orjson.loads(shown["body_text"])["not"] == "a cloudevent" and shown["headers"] == {}
    topic = new_topic(http)
    fixed = {
        "specversion": "1.0",
        "id": "fixed-1",
        "source": "/operator",
        "type": topic,
        "time": "2026-01-01T00:00:00Z",
        "dataschema": f"/topics/{topic}/schemas/1",
        "data": orjson.loads(shown["body_text"]),
    }
    r = http.post(
        f"/deadletters/{one['id']}:replay",
        content=orjson.dumps(fixed),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["replays"] == 1 and r.json()["replayed_at"]
    wait_for(
        lambda: [e["id"] for e in http.get(f"/topics/{topic}/events").json()["items"]] == ["fixed-1"],
        timeout=20,
        what="the fixed event recorded",
    )
    assert len(list_all(http, queue=EVENTS_QUEUE, replayed=True)) == 1
    assert len(list_all(http, queue=EVENTS_QUEUE, replayed=False)) == N - 1


def letter_where(http: httpx.Client, timeout: float = 20, **want: Any) -> dict[str, Any]:
    """The one letter (listed without filters) whose fields have these values, once it is there."""

    def find() -> dict[str, Any] | None:
        found = [d for d in list_all(http) if all(d[k] == v for k, v in want.items())]
        assert len(found) <= 1, found
        return found[0] if found else None

    letter: dict[str, Any] = wait_for(find, timeout=timeout, interval=0.5, what=f"the letter {want}")
    return letter


def test_a_replay_that_fails_again_is_a_new_letter_with_the_first_failure_kept(http: httpx.Client) -> None:
    one = list_all(http, reason="undecodable", replayed=False)[0]
    r = http.post(f"/deadletters/{one['id']}:replay")
    assert r.status_code == 200, r.text
    back = letter_where(http, replayed_from=one["id"])
    assert back["id"] != one["id"] and back["first_failure"] == one["first_failure"]
    assert (back["reason"], back["queue"], back["replays"]) == ("undecodable", EVENTS_QUEUE, 0)
    shown = http.get(f"/deadletters/{back['id']}").json()
    assert shown["body_text"] is None and shown["body_base64"]  # not UTF-8


def test_large_bodies_are_truncated_and_only_replayed_with_a_correction(stack: Stack, http: httpx.Client) -> None:
    marker = uuid.uuid4().hex
    big = marker.encode() + b"x" * (3 * BODY_MAX)
    asyncio.run(publish_raw(stack.env["TRIBUTARY_AMQP_URL"], [("tributary.events", f"big.{marker}", big, None)]))
    letter = letter_where(http, routing_key=f"big.{marker}")
    assert letter["truncated"] is True and letter["size"] == len(big)
    shown = http.get(f"/deadletters/{letter['id']}").json()
    assert len(shown["body_text"]) == 4096 and shown["body_text"].startswith(marker)
    r = http.post(f"/deadletters/{letter['id']}:replay")
    assert r.status_code == 409 and r.json()["error"]["code"] == "body_truncated", r.text
    r = http.post(f"/deadletters/{letter['id']}:replay", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    r = http.post(
        f"/deadletters/{letter['id']}:replay", content=b"x" * (BODY_MAX + 1), headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 413, r.text


def test_letters_from_elsewhere_are_kept_but_replay_only_to_consumer_exchanges(
    stack: Stack, http: httpx.Client
) -> None:
    marker = uuid.uuid4().hex
    deep: dict[str, Any] = {}
    for _ in range(30):
        deep = {"d": deep}
    forged = {
        "x-death-reason": "Not A Reason!",
        "x-original-exchange": "",
        "x-original-routing-key": "tributary.rpc.hub",
        "x-death-id": "not-an-id",
        "nested": {"a": [1, 2, {"b": datetime(2026, 1, 1, tzinfo=UTC)}]},
        "deep": deep,
    }
    asyncio.run(publish_raw(stack.env["TRIBUTARY_AMQP_URL"], [("tributary.dead", marker, b"forged", forged)]))
    letter = letter_where(http, queue=marker)
    assert re.fullmatch(r"[0-9a-f]{32}", letter["id"]) and letter["reason"] == "unknown"
    headers = http.get(f"/deadletters/{letter['id']}").json()["headers"]
    assert headers["nested"] == {"a": [1, 2, {"b": "2026-01-01T00:00:00.000000Z"}]}
    assert orjson.dumps(headers["deep"]).count(b"{") == 7  # bounded depth
    r = http.post(f"/deadletters/{letter['id']}:replay")
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_replayable", r.text


def test_delete_purge_and_the_metric_per_reason(stack: Stack, http: httpx.Client) -> None:
    letters = list_all(http, reason="not_a_cloudevent", queue=EVENTS_QUEUE)
    first = letters[0]["id"]
    assert http.delete(f"/deadletters/{first}").status_code == 204
    assert http.get(f"/deadletters/{first}").status_code == 404
    assert http.delete(f"/deadletters/{first}").status_code == 404
    # A purge is always bounded by `before` (the current time purges everything that matches).
    for bad in ({}, {"before": ""}, {"before": "soon"}, {"reason": "not_a_cloudevent"}):
        r = http.delete("/deadletters", params=bad)
        assert r.status_code == 422 and r.json()["error"]["details"][0]["loc"] == "/query/before", (bad, r.text)
    # A year below 1000 was written `999-…`, which sorts after every letter's `2026-…`: it purged them all.
    for early in ("0999-12-31T00:00:00Z", "0001-01-01T00:00:00Z"):
        assert http.delete("/deadletters", params={"before": early}).json() == {"deleted": 0}
        assert http.get("/deadletters", params={"end": early}).json()["items"] == []
    now = "2999-01-01T00:00:00Z"
    r = http.delete("/deadletters", params={"reason": "not_a_cloudevent", "queue": EVENTS_QUEUE, "before": now})
    assert r.status_code == 200 and r.json()["deleted"] == len(letters) - 1, r.text
    assert list_all(http, reason="not_a_cloudevent", queue=EVENTS_QUEUE) == []
    assert http.delete("/deadletters", params={"before": "2000-01-01T00:00:00Z"}).json() == {"deleted": 0}
    assert list_all(http, reason="undecodable")


def test_the_recorder_counts_dead_letters_per_reason(recorder: ServiceProcess, http: httpx.Client) -> None:
    text = httpx.get(f"http://127.0.0.1:{recorder.port}/metrics", timeout=10).text
    counts = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^tributary_hub_deadletters_total\{reason="(\w+)"\} (\S+)$', text, re.M)
    }
    assert counts.get("undecodable", 0) >= N // 2 and counts.get("not_a_cloudevent", 0) >= N // 2, counts
    assert counts.get("other", 0) >= 1  # the forged reason, not a label of its own


BAD_IDS = ["abc", "0" * 31, "0" * 33, "g" * 32, "A" * 32, "x" * 10_000, "..%2F..%2Fetc", "%00" * 11]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_malformed_ids_are_404(http: httpx.Client, bad: str) -> None:
    """Only 32-hex ids are routed; anything else names no letter (never a 500)."""
    for method, path in (
        ("GET", f"/deadletters/{bad}"),
        ("DELETE", f"/deadletters/{bad}"),
        ("POST", f"/deadletters/{bad}:replay"),
    ):
        r = http.request(method, path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, path, r.text)


def test_a_replay_path_allows_only_post(http: httpx.Client) -> None:
    r = http.request("OPTIONS", f"/deadletters/{'0' * 32}:replay")
    assert r.status_code == 405 and r.headers["allow"] == "POST", r.headers


def test_unknown_ids_are_404(http: httpx.Client) -> None:
    unknown = "0" * 32
    assert http.get(f"/deadletters/{unknown}").status_code == 404
    assert http.delete(f"/deadletters/{unknown}").status_code == 404
    assert http.post(f"/deadletters/{unknown}:replay").status_code == 404


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"cursor": "!!!"}, "/cursor"),
        ({"cursor": "A" * 20_000}, "/cursor"),
        ({"reason": ".*"}, "/query/reason"),
        ({"reason": "a" * 1000}, "/query/reason"),
        ({"queue": "q" * 20_000}, "/query/queue"),
        ({"start": "yesterday"}, "/query/start"),
        ({"start": ""}, "/query/start"),
        ({"cursor": ""}, "/cursor"),
        ({"end": "2026-01-01T00:00:00"}, "/query/end"),
        ({"limit": 0}, "/query/limit"),
        ({"limit": 10**12}, "/query/limit"),
        ({"replayed": "maybe"}, "/query/replayed"),
    ],
)
def test_hostile_filters_and_cursors_are_422(http: httpx.Client, params: dict[str, Any], loc: str) -> None:
    r = http.get("/deadletters", params=params)
    assert r.status_code in (414, 422) if loc == "/query/queue" else r.status_code == 422, r.text
    if r.status_code == 422:
        assert loc in [d["loc"] for d in r.json()["error"]["details"]], r.text
    r = http.delete("/deadletters", params={k: v for k, v in params.items() if k not in ("cursor", "limit", "start")})
    assert r.status_code in (414, 422), r.text


def test_everything_is_admin_only(stack: Stack, http: httpx.Client) -> None:
    some = list_all(http)[0]["id"]
    reader = stack.mint(subject="reader", scopes=["topics:read", "events:read", "events:publish"])
    routes = [
        ("GET", "/deadletters"),
        ("DELETE", "/deadletters?reason=undecodable&before=2999-01-01T00:00:00Z"),
        ("GET", f"/deadletters/{some}"),
        ("POST", f"/deadletters/{some}:replay"),
        ("DELETE", f"/deadletters/{some}"),
    ]
    for method, path in routes:
        assert httpx.request(method, stack.hub_url + path).status_code == 401, path
        r = httpx.request(method, stack.hub_url + path, headers={"Authorization": f"Bearer {reader}"})
        assert r.status_code == 403, (path, r.text)
    assert http.get(f"/deadletters/{some}").status_code == 200  # untouched
