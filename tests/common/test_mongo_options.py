"""The MongoDB write concern, read preference, retryable writes and replica set: read from `TRIBUTARY_MONGODB_*`,
checked at start, applied to the client, and accepted by the local FerretDB (in a database of the test's own)."""

from __future__ import annotations

from typing import Any

import pytest
from beanie import Document
from pydantic import ValidationError
from pymongo import AsyncMongoClient
from pymongo.errors import ServerSelectionTimeoutError
from pymongo.read_preferences import Nearest, Primary
from pymongo.write_concern import WriteConcern

from tributary_common.mongo import connect, new_client
from tributary_common.mongo_options import ClientOptions
from tributary_common.settings import MongoSettings


class Note(Document):
    text: str

    class Settings:
        name = "notes"


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> MongoSettings:
    for name, value in env.items():
        monkeypatch.setenv(f"TRIBUTARY_MONGODB_{name.upper()}", value)
    return MongoSettings(_env_file=None)  # type: ignore[call-arg]


def test_defaults_are_the_replica_set_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    options = settings(monkeypatch).mongodb_options()
    assert options == ClientOptions("majority", 10_000, "primary", True, None)
    assert options.kwargs() == {"w": "majority", "wTimeoutMS": 10_000, "readPreference": "primary", "retryWrites": True}


def test_every_option_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(
        monkeypatch,
        write_concern="2",
        write_timeout_ms="2500",
        read_preference="nearest",
        retry_writes="false",
        replica_set="tributary-mongodb",
    )
    assert s.mongodb_options().kwargs() == {
        "w": 2,
        "wTimeoutMS": 2500,
        "readPreference": "nearest",
        "retryWrites": False,
        "replicaSet": "tributary-mongodb",
    }


@pytest.mark.parametrize(
    ("name", "value", "where"),
    [
        ("write_concern", "0", "mongodb_write_concern"),  # unacknowledged: the recorder would ack lost writes
        ("write_concern", "51", "mongodb_write_concern"),
        ("write_concern", "all", "mongodb_write_concern"),
        ("write_concern", "-1", "mongodb_write_concern"),
        ("write_timeout_ms", "-5", "mongodb_write_timeout_ms"),
        ("write_timeout_ms", "600001", "mongodb_write_timeout_ms"),
        ("read_preference", "secondary_preferred", "mongodb_read_preference"),
        ("retry_writes", "sometimes", "mongodb_retry_writes"),
        ("replica_set", "rs0&w=0", "mongodb_replica_set"),
        ("replica_set", "x" * 65, "mongodb_replica_set"),
    ],
)
def test_a_bad_value_is_refused_at_start_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, where: str
) -> None:
    with pytest.raises(ValidationError) as err:
        settings(monkeypatch, **{name: value})
    assert [e["loc"] for e in err.value.errors()] == [(where,)]


async def test_the_client_carries_the_options_over_those_in_the_url() -> None:
    client = new_client("mongodb://127.0.0.1:27017/?w=1&readPreference=nearest&retryWrites=false")
    try:
        assert client.write_concern == WriteConcern(w="majority", wtimeout=10_000)
        assert client.read_preference == Primary()
        assert client.options.retry_writes is True
    finally:
        await client.close()
    client = new_client("mongodb://127.0.0.1:27017/", options=ClientOptions(write_concern=1, read_preference="nearest"))
    try:
        assert client.write_concern == WriteConcern(w=1, wtimeout=10_000)
        assert client.read_preference == Nearest()
    finally:
        await client.close()


@pytest.mark.parametrize(
    "options",
    [
        ClientOptions(),
        ClientOptions(write_concern=1, read_preference="primaryPreferred", retry_writes=False),
        ClientOptions(read_preference="nearest", write_timeout_ms=0),
    ],
    ids=["defaults", "w1-primaryPreferred-noretry", "nearest-no-wtimeout"],
)
async def test_ferretdb_accepts_the_options_for_writes_and_reads(
    mongo_url: str, mongo_db_name: str, mongo_client: AsyncMongoClient[Any], options: ClientOptions
) -> None:
    client = await connect(mongo_url, mongo_db_name, [Note], options=options)
    try:
        notes = client[mongo_db_name]["notes"]
        assert notes.write_concern.document.get("w") == options.write_concern
        await Note(text="one").insert()
        await Note.insert_many([Note(text="two"), Note(text="three")])
        inserted = await notes.insert_one({"text": "four"})
        await notes.update_one({"_id": inserted.inserted_id}, {"$set": {"text": "FOUR"}})
        await notes.delete_one({"text": "two"})
        assert sorted(n.text for n in await Note.find_all().to_list()) == ["FOUR", "one", "three"]
    finally:
        await client.close()
    # What the options wrote is there for any other client.
    assert await mongo_client[mongo_db_name]["notes"].count_documents({}) == 3


async def test_a_replica_set_name_is_applied_to_server_selection(mongo_url: str, mongo_db_name: str) -> None:
    """FerretDB is no member of a replica set: a client that asks for one finds no server, so the name is used."""
    with pytest.raises(ServerSelectionTimeoutError, match='replica set name "rs0"'):
        await connect(mongo_url, mongo_db_name, [Note], timeout_ms=300, options=ClientOptions(replica_set="rs0"))
