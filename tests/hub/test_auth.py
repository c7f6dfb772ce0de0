"""Authorization matrix: every route × no token (401), wrong scope (403), right scope, and names outside the
token's ACL (403); API keys created by an admin, stored hashed, usable as bearer tokens, revocable."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest

from tests.hub.conftest import MINT, SECRET, make_topic, recorded
from tests.support.polling import eventually
from tributary_common import matcher
from tributary_common.auth import SCOPES
from tributary_common.timeutil import format_time, utcnow
from tributary_hub.composition import Hub


@dataclass
class Route:
    method: str
    path: str
    scope: str
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)
    # ACL claims that leave the route's target outside (None: the route has no per-name target)
    outside: dict[str, list[str]] | None = None
    # ACL claims that cover the target (the same route then succeeds)
    inside: dict[str, list[str]] | None = None


EVENT = {"data": {"x": 1}, "subject": "a.b"}
UNITOP = {"name": "pump-1", "items": {}, "meta": {"site": "p1"}}
ROUTES = [
    Route(
        "POST",
        "/topics",
        "topics:write",
        {"name": "fresh", "schema": {"type": "object"}},
        outside={"topics": ["t.#"]},
        inside={"topics": ["fresh.#"]},
    ),
    Route("GET", "/topics", "topics:read"),
    Route("GET", "/topics/t", "topics:read", outside={"topics": ["other.#"]}, inside={"topics": ["t.a.#"]}),
    Route(
        "PATCH",
        "/topics/t",
        "topics:write",
        {"description": "x"},
        outside={"topics": ["t.a.#"]},
        inside={"topics": ["t.#"]},
    ),
    Route(
        "PUT",
        "/topics/t/schema",
        "topics:write",
        {"schema": {"type": "object"}},
        outside={"topics": ["other.#"]},
        inside={"topics": ["#"]},
    ),
    Route("GET", "/topics/t/schemas", "topics:read", outside={"topics": ["other.#"]}, inside={"topics": ["t"]}),
    Route("GET", "/topics/t/schemas/1", "topics:read", outside={"topics": ["other.#"]}, inside={"topics": ["*.#"]}),
    Route(
        "DELETE", "/topics/doomed", "topics:write", outside={"topics": ["doomed.a"]}, inside={"topics": ["doomed.#"]}
    ),
    Route(
        "POST", "/topics/t/events", "events:publish", EVENT, outside={"topics": ["t.x.#"]}, inside={"topics": ["t.a.*"]}
    ),
    Route(
        "POST",
        "/topics/t/events:batch",
        "events:publish",
        [EVENT, {"data": {}}],
        outside={"topics": ["t.a.#"]},
        inside={"topics": ["t", "t.a.#"]},
    ),
    Route(
        "GET",
        "/topics/t/events",
        "events:read",
        params={"subject": "a.#"},
        outside={"topics": ["t.a.b"]},
        inside={"topics": ["t.a.#"]},
    ),
    Route("GET", "/topics/t/events:latest", "events:read", outside={"topics": ["t.a.#"]}, inside={"topics": ["t.#"]}),
    Route(
        "POST",
        "/unitops",
        "unitops:write",
        {**UNITOP, "name": "pump-2"},
        outside={"unitops": ["valve-*"]},
        inside={"unitops": ["pump-*"]},
    ),
    Route("GET", "/unitops", "unitops:read"),
    Route("GET", "/unitops/pump-1", "unitops:read", outside={"unitops": ["valve-*"]}, inside={"unitops": ["pump-1"]}),
    Route(
        "PUT",
        "/unitops/pump-1",
        "unitops:write",
        UNITOP,
        outside={"unitops": ["pump-2"]},
        inside={"unitops": ["pump-?"]},
    ),
    Route(
        "GET", "/unitops/pump-1/samples", "unitops:read", outside={"unitops": ["valve-*"]}, inside={"unitops": ["*"]}
    ),
    *(
        Route(
            "GET",
            f"/unitops/pump-1/samples{read}",
            "unitops:read",
            params={"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", **params},
            outside={"unitops": ["valve-*"]},
            inside={"unitops": ["pump-*"]},
        )
        for read, params in (
            (":current", {}),
            (":interpolated", {"interval": "1h"}),
            (":plot", {"intervals": "10"}),
            (":summary", {"interval": "1h", "calc": "tavg"}),
        )
    ),
    Route(
        "DELETE", "/unitops/pump-1", "unitops:write", outside={"unitops": ["valve-*"]}, inside={"unitops": ["pump-*"]}
    ),
    Route("GET", "/sources", "unitops:read"),
    Route("POST", "/apikeys", "admin", {"name": "k", "scopes": ["events:read"]}),
    Route("GET", "/apikeys", "admin"),
    Route("DELETE", "/apikeys/nope", "admin"),
]


async def setup_world(client: httpx.AsyncClient) -> None:
    await make_topic(client, "t", {"type": "object"})
    await make_topic(client, "doomed", {"type": "object"})
    assert (await client.post("/unitops", json=UNITOP)).status_code == 201


async def send(anon: httpx.AsyncClient, route: Route, headers: dict[str, str]) -> httpx.Response:
    return await anon.request(route.method, route.path, json=route.json, params=route.params, headers=headers)


def scopes_without(scope: str) -> tuple[str, ...]:
    return tuple(s for s in SCOPES if s not in (scope, "admin"))


async def test_matrix(client: httpx.AsyncClient, anon: httpx.AsyncClient) -> None:
    await setup_world(client)
    for route in ROUTES:
        where = f"{route.method} {route.path}"
        r = await send(anon, route, {})
        assert r.status_code == 401, where
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
        r = await send(anon, route, {"Authorization": "Bearer not.a.jwt"})
        assert r.status_code == 401, where
        r = await send(anon, route, MINT.bearer(scopes_without(route.scope)))
        assert r.status_code == 403, (where, r.text)
        assert route.scope in r.json()["error"]["message"]
        if route.outside is not None:
            r = await send(anon, route, MINT.bearer([route.scope], **route.outside))
            assert r.status_code == 403, (where, r.text)
            assert "ACL" in r.json()["error"]["message"]
        claims = route.inside or {}
        r = await send(anon, route, MINT.bearer([route.scope], **claims))
        assert r.status_code not in (401, 403), (where, r.text)
        assert r.status_code < 500, (where, r.text)


async def test_expired_and_forged_tokens(anon: httpx.AsyncClient) -> None:
    now = int(time.time())
    expired = jwt.encode({"sub": "x", "scope": "admin", "exp": now - 3600}, SECRET, algorithm="HS256")
    forged = jwt.encode(
        {"sub": "x", "scope": "admin", "exp": now + 3600}, "another-secret-of-enough-length-000", algorithm="HS256"
    )
    for tok, words in ((expired, "expired"), (forged, "invalid token")):
        r = await anon.get("/topics", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 401
        assert words in r.json()["error"]["message"]


async def test_listings_are_filtered_by_acl(client: httpx.AsyncClient, anon: httpx.AsyncClient) -> None:
    await setup_world(client)
    assert (await client.post("/unitops", json={**UNITOP, "name": "valve-1"})).status_code == 201
    r = await anon.get("/topics", headers=MINT.bearer(["topics:read"], topics=["t.#"]))
    assert [t["name"] for t in r.json()["items"]] == ["t"]
    r = await anon.get("/unitops", headers=MINT.bearer(["unitops:read"], unitops=["valve-*"]))
    assert [u["name"] for u in r.json()["items"]] == ["valve-1"]


async def test_history_patterns_must_be_covered(client: httpx.AsyncClient, anon: httpx.AsyncClient, hub: Hub) -> None:
    await setup_world(client)
    for subject in ("a.b", "a.c", "z"):
        assert (await client.post("/topics/t/events", json={"data": {}, "subject": subject})).status_code == 202
    await eventually(lambda: _n(hub, 3), what="events recorded", interval=0.05)
    reader = MINT.bearer(["events:read"], topics=["t.a.#"])
    r = await anon.get("/topics/t/events", params={"subject": "a.*"}, headers=reader)
    assert r.status_code == 200
    assert {e["subject"] for e in r.json()["items"]} == {"a.b", "a.c"}
    for pattern in ("#", "*.b", "z"):
        r = await anon.get("/topics/t/events", params={"subject": pattern}, headers=reader)
        assert r.status_code == 403, pattern
    r = await anon.get("/topics/t/events", headers=reader)  # the whole topic
    assert r.status_code == 403


async def _n(hub: Hub, n: int) -> bool:
    return len(await recorded(hub, "t")) >= n


async def test_api_keys(client: httpx.AsyncClient, anon: httpx.AsyncClient, hub: Hub) -> None:
    await setup_world(client)
    r = await client.post("/apikeys", json={"name": "gw", "scopes": ["events:publish"], "topics": ["t.a.#"]})
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("trk_") and "." not in key
    # Stored hashed: the secret appears nowhere in the database.
    assert hub.mongo is not None
    stored = await hub.mongo[hub.settings.mongodb_db]["api_keys"].find_one({"_id": created["id"]})
    assert stored is not None
    assert key not in str(stored)
    assert stored["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    listed = (await client.get("/apikeys")).json()["items"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0] and "key_hash" not in listed[0]

    as_key = {"Authorization": f"Bearer {key}"}
    r = await anon.post("/topics/t/events", json={"data": {}, "subject": "a.1"}, headers=as_key)
    assert r.status_code == 202, r.text
    r = await anon.post("/topics/t/events", json={"data": {}, "subject": "b"}, headers=as_key)
    assert r.status_code == 403  # outside the key's ACL
    r = await anon.get("/topics", headers=as_key)
    assert r.status_code == 403  # scope it does not have
    r = await anon.get("/topics", headers={"Authorization": "Bearer trk_unknown"})
    assert r.status_code == 401

    bad = await client.post("/apikeys", json={"name": "x", "scopes": ["root"], "topics": ["a..b"]})
    assert bad.status_code == 422
    assert sorted(d["loc"] for d in bad.json()["error"]["details"]) == ["/scopes/0", "/topics/0"]
    assert (await anon.post("/apikeys", json={"name": "x", "scopes": ["admin"]}, headers=as_key)).status_code == 403

    assert (await client.delete(f"/apikeys/{created['id']}")).status_code == 204
    r = await anon.post("/topics/t/events", json={"data": {}, "subject": "a.1"}, headers=as_key)
    assert r.status_code == 401
    assert (await client.delete(f"/apikeys/{created['id']}")).status_code == 404


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
async def test_open_routes(anon: httpx.AsyncClient, path: str) -> None:
    r = await anon.get(path)
    assert r.status_code == 200


async def test_openapi_declares_scopes_and_examples(anon: httpx.AsyncClient) -> None:
    spec = (await anon.get("/openapi.json")).json()
    declared = {}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            # Health, metrics and the AsyncAPI document (like /openapi.json) are served without credentials.
            if path in ("/healthz", "/readyz", "/metrics", "/asyncapi.json"):
                continue
            assert "x-required-scope" in op, (method, path)
            declared[(method.upper(), path)] = op["x-required-scope"]
            assert "401" in op["responses"] and "403" in op["responses"], (method, path)
            if method in ("post", "put", "patch") and path != "/topics/{topic}/events:batch":
                content = op["requestBody"]["content"]
                assert any("examples" in c or "example" in c for c in content.values()), (method, path)
    for route in ROUTES:
        template = route.path.replace("/t/", "/{topic}/").replace("/doomed", "/{topic}").replace("/pump-1", "/{name}")
        template = template.replace("/apikeys/nope", "/apikeys/{key_id}").replace("/schemas/1", "/schemas/{version}")
        if template.endswith("/topics/t"):
            template = template[: -len("/t")] + "/{topic}"
        assert declared.get((route.method, template)) == route.scope, (route.method, template)


async def test_a_token_expiring_past_the_year_9999_is_401_not_500(anon: httpx.AsyncClient) -> None:
    """Failed before: PyJWT took the token and /whoami turned its `exp` into a time: OverflowError, a 500."""
    for exp in (10**20, 1e300):
        token = jwt.encode({"sub": "x", "scope": "admin", "exp": exp}, SECRET, algorithm="HS256")
        r = await anon.get("/whoami", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
        assert "'exp' must be a number" in r.json()["error"]["message"]


async def test_a_name_repeated_in_an_acl_error_is_bounded(client: httpx.AsyncClient, anon: httpx.AsyncClient) -> None:
    """Failed before: a 403 (or 404) repeated the whole path segment, up to most of a 64 KiB request head."""
    name = "a" * 30_000
    calls = [
        ("GET", f"/unitops/{name}", MINT.bearer(["unitops:read"], unitops=["pump-*"])),
        ("GET", f"/topics/{name}", MINT.bearer(["topics:read"], topics=["t.#"])),
        ("PATCH", f"/topics/b{name[:200]}", MINT.bearer(["topics:write"], topics=["t.#"])),
        ("GET", f"/topics/{name}", MINT.bearer(["topics:read"])),
    ]
    for method, path, headers in calls:
        r = await anon.request(method, path, headers=headers, json={"description": "x"})
        assert r.status_code in (403, 404), (method, path[:20], r.status_code)
        assert len(r.content) < 1000, (method, path[:20], r.text[:200])


async def test_overlong_topic_names_stay_out_of_the_acl_matcher_cache(anon: httpx.AsyncClient) -> None:
    """Failed before: each name was tokenized into the matcher's cache (4,096 entries, each as long as the name):
    thousands of 60 KB names held hundreds of MB. No topic is longer than a routing key: 404 at once."""
    writer = MINT.bearer(["topics:write"], topics=["t.#"])
    misses = matcher._tokens.cache_info().misses
    for i in range(40):
        r = await anon.delete(f"/topics/{i:03d}{'x' * 20_000}", headers=writer)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_topic", r.text[:200]
    assert matcher._tokens.cache_info().misses - misses < 20
    assert (await anon.delete("/topics/other", headers=writer)).status_code == 403  # short names: the ACL decides


async def test_api_key_unitops_are_globs(client: httpx.AsyncClient) -> None:
    """Failed before: any string was stored as a unitop glob and compiled on every use of the key."""
    for glob in ("*" * 129, "", "pump/1", "pump-\n"):
        r = await client.post("/apikeys", json={"name": "k", "scopes": ["unitops:read"], "unitops": [glob]})
        assert r.status_code == 422, (glob, r.text)
        assert [d["loc"] for d in r.json()["error"]["details"]] == ["/unitops/0"]
    r = await client.post("/apikeys", json={"name": "k", "scopes": ["unitops:read"], "unitops": ["pump-[0-9]*"]})
    assert r.status_code == 201, r.text


async def test_a_replay_content_type_amqp_cannot_carry_is_415(client: httpx.AsyncClient, hub: Hub) -> None:
    """Failed before: the corrected body's Content-Type became the message's content type, an AMQP short string:
    over 255 bytes (or not ASCII) the broker client raised TypeError / UnicodeEncodeError, a 500."""
    letter = uuid.uuid4().hex
    await hub.deadletters.collection.insert_one(
        {
            "_id": letter,
            "time": format_time(utcnow()),
            "reason": "undecodable",
            "queue": "q",
            "exchange": "tributary.events",
            "routing_key": "t.a",
            "body": b"{}",
            "size": 2,
            "truncated": False,
            "replays": 0,
            "headers_json": "{}",
        }
    )
    for kind in ("application/" + "x" * 300, "text/\xe9t\xe9", "no-slash", "a/b/c"):
        r = await client.post(
            f"/deadletters/{letter}:replay", content=b"{}", headers={b"Content-Type": kind.encode("latin-1")}
        )
        assert r.status_code == 415, (kind[:20], r.status_code, r.text[:200])
        assert "Content-Type" in r.json()["error"]["message"] and len(r.content) < 1000
    r = await client.post(f"/deadletters/{letter}:replay", content=b"{}", headers={"Content-Type": "text/plain; x=y"})
    assert r.status_code == 200 and r.json()["replays"] == 1, r.text
