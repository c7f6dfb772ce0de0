"""Tokens anyone can write, and claims an identity provider (or anyone holding a signing key) can put in them: the
verifier answers AuthError (401) naming what is wrong, never an exception that is a 500, and bounds what a claim
makes every later request cost. Verifier-level, with a real JWKS endpoint on loopback (tests/support/jwks.py)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.support.jwks import Jwks, serving
from tributary_common.auth import MAX_ACL_PATTERNS, AuthError, JwtVerifier

SECRET = "hostile-tokens-secret-0123456789-0123456789"


@pytest.fixture(scope="module")
def jwks() -> Iterator[Jwks]:
    with serving("rsa") as server:
        yield server


@pytest.fixture(scope="module")
def bare_jwks() -> Iterator[Jwks]:
    """JWKs without `alg` (Azure AD's): the key's type alone limits what it verifies."""
    with serving("rsa", declare_alg=False) as server:
        yield server


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any]) -> str:
    """A token with `header` and a garbage signature: what anyone without a key can send."""
    claims = {"sub": "mallory", "scope": "admin", "exp": int(time.time()) + 600}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(b'x' * 64)}"


def signed(**claims: Any) -> str:
    return jwt.encode({"sub": "p", "scope": "admin", "exp": int(time.time()) + 600, **claims}, SECRET)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "HS256", "EdDSA"])
async def test_an_alg_the_jwks_key_cannot_use_is_401_not_500(jwks: Jwks, bare_jwks: Jwks, alg: str) -> None:
    """Failed before: PyJWT prepares the RSA key of the named kid for the header's algorithm and raises
    TypeError ("Expecting a PEM-formatted key.") - a 500 for an unsigned token, whenever the configured algorithms
    hold more than one key type (RS256 and ES256: an identity provider with both). A JWK naming its `alg` refuses
    the token before its key is prepared; one without is where PyJWT raised."""
    for server, said in ((bare_jwks, "does not fit the key"), (jwks, "is not its key's")):
        verifier = JwtVerifier(secret=None, algorithms=["RS256", alg], jwks_url=server.url)
        with pytest.raises(AuthError, match=f"alg '{alg}' {said}"):
            await verifier.verify(forged({"alg": alg, "kid": "rsa", "typ": "JWT"}))
        assert (await verifier.verify(server.token("rsa"))).subject == "oidc-user"  # the right one still verifies


async def test_an_asymmetric_alg_against_the_shared_secret_is_401_not_500() -> None:
    """Failed before: ES256 allowed beside HS256 with a shared secret made PyJWT parse the secret as a PEM key:
    ValueError, a 500."""
    verifier = JwtVerifier(secret=SECRET, algorithms=["HS256", "ES256"])
    with pytest.raises(AuthError, match="alg 'ES256' does not fit the key"):
        await verifier.verify(forged({"alg": "ES256", "typ": "JWT"}))
    assert (await verifier.verify(signed())).subject == "p"


@pytest.mark.parametrize("exp", [1e300, 10**20, 253402300800, "9999999999", "in ten minutes, as text"])
async def test_an_exp_past_the_year_9999_or_not_a_number_is_refused(exp: Any) -> None:
    """Failed before: PyJWT takes any `exp` int() takes; a huge one made /whoami a 500 (OverflowError turning it
    into a time) and a string one left the principal without an expiry (its streams never ended)."""
    if exp == "in ten minutes, as text":  # made when the test runs, not when it is collected (minutes earlier)
        exp = str(int(time.time()) + 600)
    verifier = JwtVerifier(secret=SECRET, algorithms=["HS256"])
    with pytest.raises(AuthError, match="'exp' must be a number"):
        await verifier.verify(signed(exp=exp))


async def test_exp_up_to_the_last_second_of_9999_is_a_time() -> None:
    principal = await JwtVerifier(secret=SECRET, algorithms=["HS256"]).verify(signed(exp=253402300799))
    assert principal.expires_at == 253402300799


@pytest.mark.parametrize(
    ("claims", "said"),
    [
        ({"unitops": ["*" * 129]}, "'unitops' pattern"),
        ({"unitops": ["pump-1/../x"]}, "'unitops' pattern"),
        ({"unitops": [""]}, "'unitops' pattern"),
        ({"unitops": [f"u{i}" for i in range(MAX_ACL_PATTERNS + 1)]}, f"more than {MAX_ACL_PATTERNS} patterns"),
        ({"topics": [f"t{i}.#" for i in range(MAX_ACL_PATTERNS + 1)]}, f"more than {MAX_ACL_PATTERNS} patterns"),
    ],
)
async def test_acl_claims_are_bounded_globs_and_patterns(claims: dict[str, Any], said: str) -> None:
    """Failed before: `unitops` globs of any length and any number of ACL patterns were taken, each compiled
    (fnmatch keeps 32,768 compiled globs) and matched against on every request: a 7,000-pattern `topics` claim
    cost 1.5 s of event loop per listing of 100 topics and 36 s per batch of 10,000 events."""
    verifier = JwtVerifier(secret=SECRET, algorithms=["HS256"])
    with pytest.raises(AuthError, match=said):
        await verifier.verify(signed(**claims))


async def test_acl_claims_within_the_bounds_still_work() -> None:
    verifier = JwtVerifier(secret=SECRET, algorithms=["HS256"])
    globs = ["pump-*", "valve-[0-9]", "mixer-?", "[!x]*", "p" * 128]
    topics = [f"t{i}.#" for i in range(MAX_ACL_PATTERNS)]
    principal = await verifier.verify(signed(scope="unitops:read", unitops=globs, topics=topics))
    assert principal.unitops == tuple(globs) and principal.may_unitop("pump-7") and not principal.may_unitop("x")
    assert principal.topics is not None and len(principal.topics) == MAX_ACL_PATTERNS


async def test_a_jwks_key_verifies_only_the_alg_its_jwk_names(jwks: Jwks) -> None:
    """The JWK says `"alg": "RS256"`; with PS256 allowed too (an identity provider signing with both), a token the
    same RSA key signed with PS256 verified before: a key is for the one algorithm its JWK names (RFC 8725, 3.1)."""
    verifier = JwtVerifier(secret=None, algorithms=["RS256", "PS256"], jwks_url=jwks.url)
    claims = {"sub": "p", "scope": "admin", "exp": int(time.time()) + 600}
    other_alg = jwt.encode(claims, jwks.keys["rsa"], algorithm="PS256", headers={"kid": "rsa"})
    with pytest.raises(AuthError, match="its alg 'PS256' is not its key's \\(RS256\\)"):
        await verifier.verify(other_alg)
    assert (await verifier.verify(jwks.token("rsa"))).subject == "oidc-user"


async def test_a_jwk_without_alg_verifies_every_allowed_alg_its_key_fits(bare_jwks: Jwks) -> None:
    """Azure AD's key sets leave `alg` out: the key then verifies what is allowed and fits it, as before."""
    verifier = JwtVerifier(secret=None, algorithms=["RS256", "PS256"], jwks_url=bare_jwks.url)
    claims = {"sub": "p", "scope": "admin", "exp": int(time.time()) + 600}
    for alg in ("RS256", "PS256"):
        token = jwt.encode(claims, bare_jwks.keys["rsa"], algorithm=alg, headers={"kid": "rsa"})
        assert (await verifier.verify(token)).subject == "p"


@pytest.mark.parametrize(
    "aud",
    [None, 123, {"tributary": 1}, [{"aud": "tributary"}], ["x" * 100_000], [], "tributaryx", ["account"]],
    ids=["absent", "number", "object", "list-of-objects", "huge", "empty-list", "near-miss", "another-app"],
)
async def test_hostile_audiences_are_401_where_audiences_are_set(aud: object) -> None:
    """Beside one or several audiences (TRIBUTARY_JWT_AUDIENCE) a token's `aud` of any shape but one of them is a
    401, never a 500; one of them, alone or in a list, verifies."""
    verifier = JwtVerifier(secret=SECRET, algorithms=["HS256"], audience=["tributary", "api://tributary"])
    claims = {} if aud is None else {"aud": aud}
    with pytest.raises(AuthError):
        await verifier.verify(signed(scope="admin", **claims))
    for good in ("tributary", ["account", "api://tributary"]):
        assert (await verifier.verify(signed(scope="admin", aud=good))).subject
