"""Secret references in params: resolved from a folder (a mounted Kubernetes Secret) or the environment, never
outside the folder, never logged (pure logic on a temporary folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from tributary_ingest.sdk import BadParams, Connector, Secret, SecretRefused
from tributary_ingest.secret_store import MAX_SECRET_BYTES, SecretStore, UnknownSecret


class Params(BaseModel):
    token: Secret
    headers: dict[str, Secret] = Field(default_factory=dict)
    password: Secret | None = None


class Source(Connector[Params]):
    params_model = Params


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "secrets"
    d.mkdir()
    # What Kubernetes mounts: each key a symlink into `..data`, itself a symlink to a timestamped folder.
    (d / "..2026_11_30").mkdir()
    (d / "..2026_11_30" / "db.password").write_text("s3cret\n")
    (d / "..data").symlink_to("..2026_11_30")
    (d / "db.password").symlink_to("..data/db.password")
    (d / "crlf").write_bytes(b"line\r\n")
    (d / "two-newlines").write_text("v\n\n")
    (d / "big").write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    (d / "binary").write_bytes(b"\xff\xfe")
    (d / "sub").mkdir()
    (tmp_path / "outside").write_text("not yours")
    (d / "escape").symlink_to(tmp_path / "outside")
    os.mkfifo(d / "fifo")
    return d


def test_files_then_environment(folder: Path) -> None:
    store = SecretStore(folder, {"TRIBUTARY_SECRET_API_KEY_V2": "from-env", "TRIBUTARY_SECRET_DB_PASSWORD": "env"})
    assert store.resolve("db.password") == "s3cret"  # through the symlinks, one trailing newline stripped
    assert store.resolve("crlf") == "line"
    assert store.resolve("two-newlines") == "v\n"
    assert store.resolve("api-key.v2") == "from-env"  # upper-cased, '.' and '-' as '_'
    assert SecretStore(None, {"TRIBUTARY_SECRET_DB_PASSWORD": "env"}).resolve("db.password") == "env"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../outside", "must be 1-128"),
        ("..", "must be 1-128"),
        (".", "must be 1-128"),
        ("..data", "must be 1-128"),
        ("/etc/passwd", "must be 1-128"),
        ("a" * 129, "must be 1-128"),
        ("", "must be 1-128"),
        ("escape", "outside TRIBUTARY_SECRETS_DIR"),
        ("fifo", "not a regular file"),
        ("sub", "not a regular file"),
        ("big", "over 65536 bytes"),
        ("binary", "not UTF-8"),
        ("missing", "'missing' is not set: no file 'missing' in TRIBUTARY_SECRETS_DIR and no TRIBUTARY_SECRET_MISSING"),
    ],
)
def test_refusals_name_the_secret_and_never_its_value(folder: Path, name: str, why: str) -> None:
    with pytest.raises(UnknownSecret) as info:
        SecretStore(folder, {}).resolve(name)
    assert why in str(info.value)
    assert "not yours" not in str(info.value)


def test_the_connector_sees_resolved_values_hidden_from_repr(folder: Path) -> None:
    store = SecretStore(folder, {"TRIBUTARY_SECRET_TOKEN": "tok-123"})
    params = Source.parse_params(
        {"token": {"secret": "token"}, "headers": {"Authorization": {"secret": "db.password"}}}, store
    )
    assert params.token == "tok-123" and params.headers == {"Authorization": "s3cret"} and params.password is None
    assert isinstance(params.token, str) and "tok-123" not in repr(params) and "s3cret" not in repr(params)
    # A literal (what an older unitop may hold) is still read; the hub refuses new ones.
    assert Source.parse_params({"token": "literal"}, store).token == "literal"


def test_unresolvable_or_malformed_references_are_refused_clearly(folder: Path) -> None:
    store = SecretStore(folder, {})
    with pytest.raises(SecretRefused, match=r"params.token: secret 'nope' is not set"):
        Source.parse_params({"token": {"secret": "nope"}}, store)
    with pytest.raises(SecretRefused, match=r"params.headers.A: secret name '../x' must be"):
        Source.parse_params({"token": "x", "headers": {"A": {"secret": "../x"}}}, store)
    with pytest.raises(SecretRefused, match="no secret store"):
        Source.parse_params({"token": {"secret": "db.password"}})
    with pytest.raises(BadParams, match=r'params.token: a secret reference is exactly \{"secret": "NAME"\}') as info:
        Source.parse_params({"token": {"secret": "db.password", "extra": 1}}, store)
    assert not isinstance(info.value, SecretRefused)


def test_the_schema_marks_secret_fields() -> None:
    schema = Source.params_schema()
    marked = [schema["properties"]["token"], schema["properties"]["headers"]["additionalProperties"]]
    marked.append(schema["properties"]["password"]["anyOf"][0])
    assert all(m["x-tributary-secret"] is True and m["writeOnly"] is True for m in marked)
