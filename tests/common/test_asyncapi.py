"""The AsyncAPI documents of hub and stream: valid against the official AsyncAPI 3.0.0 JSON Schema (npm
`@asyncapi/specs`, installed by `make tools`), every reference resolving, and served at `GET /asyncapi.json`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient

from tributary_common.asyncapi import Api, Channel, Message, Operation, document
from tributary_common.asyncapi_apis import HUB, STREAM
from tributary_common.control import Demand, SourceAnnouncement, UnitopChange
from tributary_common.events import CloudEvent
from tributary_common.samples import SampleBatch
from tributary_common.stream_frames import CLIENT_FRAMES, SERVER_FRAMES

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / ".local/tools/node_modules/@asyncapi/specs"
SCHEMA = SPECS / "schemas/3.0.0-without-$id.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    assert SCHEMA.exists(), f"{SCHEMA} is missing: `make tools` installs @asyncapi/specs"
    version = json.loads((SPECS / "package.json").read_text())["version"]
    assert version.startswith("6."), f"@asyncapi/specs {version}: the 3.0.0 schema is expected in 6.x"
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))


def _errors(validator: jsonschema.Draft7Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(doc)]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref}: only local references"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


@pytest.mark.parametrize("api", [HUB, STREAM], ids=["hub", "stream"])
def test_document_is_valid_asyncapi_3(api: Api, validator: jsonschema.Draft7Validator) -> None:
    doc = document(api)
    assert doc["asyncapi"] == "3.0.0"
    assert _errors(validator, doc) == []
    for ref in _refs(doc):
        _resolve(doc, ref)


def test_the_schema_catches_a_broken_document(validator: jsonschema.Draft7Validator) -> None:
    # The check is not vacuous: a wrong action, a channel without messages map, a bad version all fail.
    doc = document(HUB)
    for path, value in ((("operations", "recordEvents", "action"), "consume"), (("asyncapi",), "3.0")):
        broken = copy.deepcopy(doc)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert _errors(validator, broken), f"{'/'.join(path)} = {value!r} was accepted"


def test_hub_messages_are_the_wire_models() -> None:
    doc = document(HUB)
    schemas = doc["components"]["schemas"]
    for model in (CloudEvent, SampleBatch, Demand, SourceAnnouncement, UnitopChange):
        ref = f"#/components/schemas/{model.__name__}"
        assert _resolve(doc, ref) == schemas[model.__name__]
        payloads = [m["payload"] for m in doc["components"]["messages"].values()]
        assert {"$ref": ref} in payloads, f"no message carries {model.__name__}"
    # The same schema pydantic validates with (a field added to the model shows up here).
    assert set(schemas["CloudEvent"]["properties"]) == set(CloudEvent.model_fields)
    exchanges = {c["address"] for c in doc["channels"].values()}
    assert {"tributary.events", "tributary.samples", "tributary.control", "tributary.dead"} <= exchanges
    assert "tributary.rpc.hub" in exchanges


def test_stream_document_has_every_frame() -> None:
    doc = document(STREAM)
    ws = doc["channels"]["ws"]["messages"]
    names = {m.__name__ for m in CLIENT_FRAMES + SERVER_FRAMES}
    assert {r["$ref"].rsplit("/", 1)[1] for r in ws.values()} == {n[0].lower() + n[1:] for n in names}
    assert names <= set(doc["components"]["schemas"])


def test_a_typo_in_a_description_is_refused() -> None:
    channel = Channel("c", "x", "a channel", (Message("m", "a message", CloudEvent),))
    for op in (Operation("o", "send", "nope", ("m",), "s"), Operation("o", "send", "c", ("nope",), "s")):
        with pytest.raises(ValueError, match=r"no (channel|message)"):
            document(Api("t", "1", "d", {}, (channel,), (op,)))


def test_served_by_hub_and_stream(validator: jsonschema.Draft7Validator) -> None:
    from tributary_hub.app import create_app as hub_app
    from tributary_hub.settings import HubSettings
    from tributary_stream.app import create_app as stream_app
    from tributary_stream.settings import StreamSettings

    # No lifespan (no broker, no database): the document needs neither.
    for app, api in ((hub_app(HubSettings(dev_mode=True)), HUB), (stream_app(StreamSettings(dev_mode=True)), STREAM)):
        response = TestClient(app).get("/asyncapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == json.loads(json.dumps(document(api)))
        assert _errors(validator, response.json()) == []


def test_hub_openapi_declares_the_route() -> None:
    from tributary_hub.app import create_app as hub_app
    from tributary_hub.settings import HubSettings

    spec = hub_app(HubSettings(dev_mode=True)).openapi()
    get = spec["paths"]["/asyncapi.json"]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "object"
