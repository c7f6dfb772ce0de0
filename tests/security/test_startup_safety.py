"""The hub and the stream refuse to start with settings that let anyone in (the public development secret,
authentication off) unless `TRIBUTARY_DEV_MODE=true`. Failed on the code before: both started and accepted tokens
signed with the secret printed in the repository."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from tests.support import platform
from tests.support.processes import ServiceProcess
from tributary_common.settings import DEFAULT_JWT_SECRET, CommonSettings, InsecureSettings

MODULES = ("tributary_hub", "tributary_stream")


def test_settings_refuse_the_public_secret_and_disabled_auth_outside_dev_mode() -> None:
    with pytest.raises(InsecureSettings, match="TRIBUTARY_JWT_SECRET"):
        CommonSettings(jwt_secret=DEFAULT_JWT_SECRET).jwt_key()
    with pytest.raises(InsecureSettings, match="TRIBUTARY_AUTH_ENABLED"):
        CommonSettings(jwt_secret="x" * 40, auth_enabled=False).check_auth_safety()
    assert CommonSettings(jwt_secret=DEFAULT_JWT_SECRET, dev_mode=True).jwt_key() == DEFAULT_JWT_SECRET
    assert CommonSettings(jwt_secret="s" * 40).jwt_key() == "s" * 40
    # With keys from an identity provider the shared secret is not used at all.
    CommonSettings(
        jwt_secret=DEFAULT_JWT_SECRET, jwks_url="https://idp.example/jwks", jwt_audience="tributary"
    ).check_auth_safety()


def _idp(**extra: Any) -> CommonSettings:
    return CommonSettings(jwks_url="https://idp.example/jwks", jwt_algorithms=["RS256"], **extra)


def test_an_identity_provider_without_an_audience_is_refused_unless_waived(caplog: pytest.LogCaptureFixture) -> None:
    """Tokens an identity provider issued for any of its applications would verify without an audience: the hub and
    the stream (which call this at start) refuse it, unless `TRIBUTARY_JWT_ANY_AUDIENCE=true` says so, loudly.
    Before: a warning only, and such tokens were accepted."""
    with pytest.raises(InsecureSettings, match="without TRIBUTARY_JWT_AUDIENCE"):
        _idp().check_auth_safety()
    with caplog.at_level(logging.WARNING, logger="tributary_common.settings"):
        _idp(jwt_any_audience=True).check_auth_safety()
    assert any("TRIBUTARY_JWT_ANY_AUDIENCE=true" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tributary_common.settings"):
        _idp().jwt_key()  # read at composition too: the refusal is the start's, said once
        _idp(jwt_audience="api://tributary").check_auth_safety()
        _idp(dev_mode=True).check_auth_safety()
    assert not caplog.records


def test_audiences_are_a_list() -> None:
    """One audience, several (comma-separated or JSON): a token must carry one of them."""
    assert _idp(jwt_audience="tributary").jwt_audience == ["tributary"]
    assert _idp(jwt_audience="tributary, api://tributary").jwt_audience == [
        "tributary",
        "api://tributary",
    ]
    assert _idp(jwt_audience='["a", "b"]').jwt_audience == ["a", "b"]
    assert _idp(jwt_audience=None).jwt_audience == []
    with pytest.raises(ValueError, match="jwt_audience"):
        _idp(jwt_audience=",".join(f"a{i}" for i in range(33)))
    for hostile in ("[1, 2]", "[oops", '["a", null]', '{"aud": "x"}', '"tributary"', "{oops"):
        with pytest.raises(ValueError, match="jwt_audience"):
            _idp(jwt_audience=hostile)
    assert _idp(jwt_audience=" , ").jwt_audience == []  # no audience at all: refused at start as if unset


@pytest.mark.parametrize(
    ("algorithms", "jwks_url", "message"),
    [
        (["none"], None, "JWT algorithms must be some of"),
        (["HS256", "RS999"], None, "JWT algorithms must be some of"),
        ([], "https://idp.example/jwks", "JWT algorithms must be some of"),
        (["HS256", "ES256"], None, "HS256, HS384 and HS512 only"),
        (["RS256"], None, "HS256, HS384 and HS512 only"),
    ],
)
def test_jwt_algorithms_are_checked_at_start(algorithms: list[str], jwks_url: str | None, message: str) -> None:
    """An algorithm the verifier does not know, or an asymmetric one beside a shared secret (which can never verify
    with it), is refused when the settings are read rather than found at the first request."""
    with pytest.raises(ValueError, match=message):
        CommonSettings(jwt_secret="s" * 40, jwt_algorithms=algorithms, jwks_url=jwks_url)
    assert CommonSettings(jwt_secret="s" * 40, jwt_algorithms=["HS256", "HS512"]).jwt_algorithms == ["HS256", "HS512"]
    assert CommonSettings(jwt_algorithms=["RS256", "ES256"], jwks_url="https://idp.example/jwks").jwt_algorithms


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    "env",
    [
        {"TRIBUTARY_JWT_SECRET": DEFAULT_JWT_SECRET},
        {"TRIBUTARY_JWT_SECRET": "a-real-secret-0123456789-0123456789", "TRIBUTARY_AUTH_ENABLED": "false"},
        {"TRIBUTARY_JWKS_URL": "https://idp.example/jwks", "TRIBUTARY_JWT_ALGORITHMS": '["RS256"]'},
    ],
    ids=["default-secret", "auth-off", "idp-without-audience"],
)
def test_services_refuse_to_start_with_insecure_settings(
    services: None, module: str, env: dict[str, str], tmp_path: Path
) -> None:
    port = platform.free_port()
    proc = ServiceProcess(
        module,
        ["serve"],
        {**env, "TRIBUTARY_DEV_MODE": "false", "TRIBUTARY_HTTP_PORT": str(port)},
        tmp_path / "out.log",
        port,
    ).start(wait=False)
    assert proc.proc is not None
    assert proc.proc.wait(60) == 2
    assert "refusing to start" in proc.tail()
    assert not platform.port_open(port)


@pytest.mark.parametrize("module", MODULES)
def test_dev_mode_accepts_the_development_secret(services: None, module: str, tmp_path: Path) -> None:
    vhost = platform.unique("devmode")
    amqp = platform.create_vhost(vhost)
    port = platform.free_port()
    env = {
        "TRIBUTARY_JWT_SECRET": DEFAULT_JWT_SECRET,
        "TRIBUTARY_DEV_MODE": "true",
        "TRIBUTARY_HTTP_PORT": str(port),
        "TRIBUTARY_AMQP_URL": amqp,
        "TRIBUTARY_MONGODB_DB": platform.unique("devmode").replace("-", "_"),
        "TRIBUTARY_CACHE_NAMESPACE": platform.unique("devmode"),
    }
    proc = ServiceProcess(module, ["serve"], env, tmp_path / "out.log", port)
    try:
        proc.start(timeout=60)
    finally:
        proc.terminate()
        platform.delete_vhost(vhost)
