"""Identity (issue 17): tokens shaped like Keycloak's and Azure AD's, RS256-signed by a key served from a local
JWKS, mapped to Tributary scopes and ACLs by TRIBUTARY_CLAIM_MAP; `/whoami` on hub and stream; a bad claim map
refuses to start; API keys that expire (refused, their streams end) and record their last use - against real hub
and stream processes on RabbitMQ, FerretDB and Memcached."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.support.jwks import Jwks, jwks_env, serving
from tests.support.stack import Stack, run_stack

ISSUER = "http://127.0.0.1/realms/plant"
CLAIM_MAP = {
    # Keycloak: realm roles and client roles are nested, groups are paths.
    "realm_access.roles": {"tributary-admin": {"scopes": ["admin"]}},
    "resource_access.tributary.roles": {"publisher": {"scopes": ["events:publish", "topics:read"]}},
    "groups": {
        "/plant1/operators": {"scopes": ["events:read", "topics:read"], "topics": ["line-a.plant1.#"]},
        # Azure AD: group object ids.
        "7d1c9b0e-2f7a-4c55-9d3e-0b8f2f6f1a11": {"scopes": ["unitops:read"], "unitops": ["pump-*"]},
    },
    # Azure AD: delegated scopes (`scp`) and app roles (`roles`).
    "scp": {"Events.Read": {"scopes": ["events:read"]}, "Topics.Read": {"scopes": ["topics:read"]}},
    "roles": {"Tributary.Admin": {"scopes": ["admin"]}, "Tributary.Publisher": {"scopes": ["events:publish"]}},
}
SCHEMA = {"type": "object", "properties": {"v": {"type": "number"}}}


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    with serving("idp") as server:
        yield server


@pytest.fixture(scope="module")
def stack(jwks: Jwks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        # Keycloak's audience (the client's id, by an audience mapper) and Azure AD's (the application id URI).
        **jwks_env(jwks, audience="tributary,api://tributary"),
        "TRIBUTARY_JWT_ISSUER": ISSUER,
        "TRIBUTARY_CLAIM_MAP": json.dumps(CLAIM_MAP),
    }
    with run_stack(Path(tmp_path_factory.mktemp("identity-logs")), services=("hub", "stream"), env=env) as s:
        yield s


def keycloak(jwks: Jwks, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": ISSUER,
        "aud": ["account", "tributary"],  # Keycloak with an audience mapper for the tributary client
        "sub": "f1c2a3b4-0000-4000-8000-000000000001",
        "typ": "Bearer",
        "azp": "tributary",
        "scope": "openid profile email",
        "realm_access": {"roles": ["offline_access", "uma_authorization"]},
        "resource_access": {"account": {"roles": ["manage-account"]}},
        "preferred_username": "alice",
        **extra,
    }
    return jwks.signed("idp", claims)


def azure(jwks: Jwks, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "aud": "api://tributary",
        "iss": ISSUER,  # the verifier checks the issuer it is configured with
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "tid": "9188040d-6c67-4c5b-b112-36a304b66dad",
        "ver": "2.0",
        **extra,
    }
    return jwks.signed("idp", claims)


def _get(url: str, token: str, path: str = "/whoami") -> httpx.Response:
    return httpx.get(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_keycloak_roles_and_groups_map_to_scopes_and_acls(stack: Stack, jwks: Jwks) -> None:
    plain = keycloak(jwks)  # only Keycloak's own roles and OIDC scopes: nothing of Tributary's
    me = _get(stack.hub_url, plain).json()
    assert me["scopes"] == [] and me["kind"] == "token" and me["subject"].startswith("f1c2a3b4")
    assert _get(stack.hub_url, plain, "/topics").status_code == 403

    operator = keycloak(jwks, groups=["/plant1/operators", "/other"], resource_access={"tributary": {"roles": ["x"]}})
    me = _get(stack.hub_url, operator).json()
    assert me["scopes"] == ["events:read", "topics:read"] and me["topics"] == ["line-a.plant1.#"], me
    assert me["unitops"] is None
    assert me["expires_at"] is not None and datetime.fromisoformat(me["expires_at"]) > datetime.now(UTC)

    admin = keycloak(jwks, realm_access={"roles": ["tributary-admin"]})
    with httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as hub:
        assert hub.post("/topics", json={"name": "line-a", "schema": SCHEMA}).status_code in (201, 409)
        assert hub.post("/topics", json={"name": "line-b", "schema": SCHEMA}).status_code in (201, 409)
    assert _get(stack.hub_url, operator, "/topics/line-a/events?subject=plant1.%23").status_code == 200
    assert _get(stack.hub_url, operator, "/topics/line-b/events").status_code == 403  # outside the group's ACL

    publisher = keycloak(jwks, resource_access={"tributary": {"roles": ["publisher"]}})
    assert _get(stack.hub_url, publisher).json()["scopes"] == ["events:publish", "topics:read"]


def test_a_token_the_provider_issued_for_another_application_is_refused(stack: Stack, jwks: Jwks) -> None:
    """Same provider, same issuer, same signing key, claims that map to admin: issued for another client (its
    audience is not ours), it is a 401 at the hub and the stream."""
    other_app = keycloak(jwks, aud="account", realm_access={"roles": ["tributary-admin"]})
    ours = keycloak(jwks, realm_access={"roles": ["tributary-admin"]})
    for url in (stack.hub_url, stack.stream_url):
        assert _get(url, ours).status_code == 200
        refused = _get(url, other_app)
        assert refused.status_code == 401, (url, refused.text)
    azure_other = azure(jwks, aud="api://another-app", roles=["Tributary.Admin"])
    assert _get(stack.hub_url, azure_other).status_code == 401


def test_azure_scp_roles_and_groups(stack: Stack, jwks: Jwks) -> None:
    delegated = azure(jwks, scp="Events.Read Topics.Read User.Read")
    assert _get(stack.hub_url, delegated).json()["scopes"] == ["events:read", "topics:read"]
    as_list = azure(jwks, scp=["Events.Read"])  # some providers send `scp` as a list
    assert _get(stack.hub_url, as_list).json()["scopes"] == ["events:read"]
    app_only = azure(jwks, roles=["Tributary.Publisher"], groups=["7d1c9b0e-2f7a-4c55-9d3e-0b8f2f6f1a11"])
    me = _get(stack.hub_url, app_only).json()
    assert me["scopes"] == ["events:publish", "unitops:read"] and me["unitops"] == ["pump-*"], me
    assert me["topics"] is None
    admin = azure(jwks, roles=["Tributary.Admin"])
    assert _get(stack.hub_url, admin, "/apikeys").status_code == 200
    # Unmapped values grant nothing; a Tributary scope name in `scope` still counts as itself.
    assert _get(stack.hub_url, azure(jwks, roles=["Tributary.Adminx"])).json()["scopes"] == []
    assert _get(stack.hub_url, azure(jwks, scope="events:read")).json()["scopes"] == ["events:read"]


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"roles": 5}, "'roles' must be a string or a list of strings"),
        ({"roles": [{"$ne": 1}]}, "'roles' must be a string or a list of strings"),
        ({"groups": [f"g{i}" for i in range(1001)]}, "more than 1000 values"),
        ({"realm_access": {"roles": "tributary-admin tributary-admin"}}, None),  # one string: one value, no match
        ({"scp": None}, None),
        ({"realm_access": ["tributary-admin"]}, None),  # not an object: the path is absent
    ],
)
def test_hostile_claim_shapes(stack: Stack, jwks: Jwks, claims: dict[str, Any], why: str | None) -> None:
    r = _get(stack.hub_url, azure(jwks, **claims))
    if why is None:
        assert r.status_code == 200 and r.json()["scopes"] == [], r.text
    else:
        assert r.status_code == 401 and why in r.json()["error"]["message"], r.text


def test_a_huge_subject_is_bounded(stack: Stack, jwks: Jwks) -> None:
    r = _get(stack.hub_url, azure(jwks, sub="s" * 5000, scp="Events.Read"))
    assert r.status_code == 200 and len(r.json()["subject"]) == 256


def test_the_stream_maps_claims_the_same_way(stack: Stack, jwks: Jwks) -> None:
    token = keycloak(jwks, groups=["/plant1/operators"])
    assert _get(stack.stream_http_url, token).json() == _get(stack.hub_url, token).json()
    assert _get(stack.stream_http_url, "nonsense.a.b").status_code == 401
    assert httpx.get(stack.hub_url + "/whoami", timeout=30).status_code == 401


def _start(module: str, claim_map: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TRIBUTARY_CLAIM_MAP": claim_map,
        "TRIBUTARY_JWT_SECRET": "x" * 40,
        "TRIBUTARY_HTTP_PORT": "1",  # never reached: the settings are refused first
    }
    return subprocess.run(
        [sys.executable, "-m", module, "serve"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp
    )


@pytest.mark.parametrize(
    ("claim_map", "said"),
    [
        (
            '{"roles": {"ops": {"scopes": ["root"]}}}',
            "TRIBUTARY_CLAIM_MAP: at roles.ops.scopes.0: Value error, unknown",
        ),
        ("{roles", 'error parsing value for field "claim_map"'),
        ('{"roles": {"ops": {"topics": ["a..b"]}}}', "invalid pattern"),
        ('{"roles": {"ops": {"scopes": [], "extra": 1}}}', "Extra inputs"),
        ('{"roles; drop": {"ops": {}}}', "claim path"),
        ('{"roles": {"ops": {"unitops": ["$where"]}}}', "unitop pattern"),
        ('{"roles": ["admin"]}', "TRIBUTARY_CLAIM_MAP"),
    ],
)
@pytest.mark.parametrize("module", ["tributary_hub", "tributary_stream"])
def test_a_bad_claim_map_refuses_to_start(module: str, claim_map: str, said: str, tmp_path: Path) -> None:
    done = _start(module, claim_map, tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "refusing to start: invalid settings" in done.stderr and said in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr


# --- API keys: expiry and last use ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hs_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"TRIBUTARY_API_KEY_CACHE_S": "1"}
    with run_stack(Path(tmp_path_factory.mktemp("apikey-logs")), services=("hub", "stream"), env=env) as s:
        yield s


def _admin(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30)


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def _drain(ws: websockets.ClientConnection) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), 15)


@pytest.mark.parametrize(
    "value",
    ["2001-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "tomorrow", "2030-01-01T00:00:00", 17, "9999-12-31T23:59:59Z"],
)
def test_hostile_expiries_are_422(hs_stack: Stack, value: Any) -> None:
    with _admin(hs_stack) as hub:
        r = hub.post("/apikeys", json={"name": "k", "scopes": ["events:read"], "expires_at": value})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["loc"] == "/expires_at", r.text


async def test_an_expired_key_is_refused_listed_as_expired_and_its_streams_end(hs_stack: Stack) -> None:
    with _admin(hs_stack) as hub:
        created = hub.post("/apikeys", json={"name": "short", "scopes": ["events:read"], "expires_at": _in(4)})
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]
        assert created.json()["expires_at"] is not None and created.json()["updated_by"] == "sec-admin"
        forever = hub.post("/apikeys", json={"name": "forever", "scopes": ["events:read"]}).json()
    me = _get(hs_stack.hub_url, key).json()
    assert me["kind"] == "api_key" and me["subject"] == f"apikey:{key_id}" and me["expires_at"] is not None
    assert _get(hs_stack.stream_http_url, key).json()["kind"] == "api_key"

    headers = {"Authorization": f"Bearer {key}"}
    async with websockets.connect(f"{hs_stack.stream_url}/ws", additional_headers=headers, open_timeout=10) as ws:
        await ws.send(json.dumps({"op": "ping", "id": "p"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await _drain(ws)  # ends at the key's expiry
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    r = _get(hs_stack.hub_url, key, "/topics")
    assert r.status_code == 401 and r.json()["error"]["message"] == "API key expired", r.text
    assert _get(hs_stack.stream_http_url, key).status_code == 401
    assert _get(hs_stack.hub_url, forever["key"]).status_code == 200
    with _admin(hs_stack) as hub:
        listed = {k["id"]: k for k in hub.get("/apikeys").json()["items"]}
    assert listed[key_id]["expired"] is True and listed[forever["id"]]["expired"] is False
    assert listed[forever["id"]]["expires_at"] is None


def test_last_use_is_recorded_at_most_once_a_minute(hs_stack: Stack) -> None:
    with _admin(hs_stack) as hub:
        key = hub.post("/apikeys", json={"name": "used", "scopes": ["topics:read"]}).json()
        assert hub.get("/apikeys").json()["items"][-1]["last_used_at"] is None

        def last_used() -> str | None:
            found = [k for k in hub.get("/apikeys").json()["items"] if k["id"] == key["id"]]
            value: str | None = found[0]["last_used_at"]
            return value

        assert _get(hs_stack.hub_url, key["key"], "/topics").status_code == 200
        deadline = time.monotonic() + 10
        while last_used() is None:
            assert time.monotonic() < deadline, "the last use was never written"
            time.sleep(0.2)
        first = last_used()
        for _ in range(20):
            assert _get(hs_stack.hub_url, key["key"], "/topics").status_code == 200
        time.sleep(1.5)  # past the verdict cache: the key is read from the database again
        assert _get(hs_stack.hub_url, key["key"], "/topics").status_code == 200
        time.sleep(0.5)
        assert last_used() == first, "the last use is written at most once a minute, not per request"
