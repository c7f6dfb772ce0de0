from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from tributary_common.events import CloudEvent, EventIn
from tributary_common.names import InvalidName, validate_pattern, validate_subject, validate_topic, validate_unitop_name
from tributary_common.samples import SampleBatch
from tributary_common.sid import SID_LENGTH, compute_sid
from tributary_common.unitops import Unitop


def test_sid_stable_across_key_order() -> None:
    a = compute_sid("csv", {"file": "x.csv", "column": "TI101.PV"})
    b = compute_sid("csv", {"column": "TI101.PV", "file": "x.csv"})
    assert a == b
    assert len(a) == SID_LENGTH and a.isalnum()


def test_sid_stable_across_processes() -> None:
    code = "from tributary_common.sid import compute_sid; print(compute_sid('csv', {'column': 'TI101.PV'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == compute_sid("csv", {"column": "TI101.PV"})


def test_sid_anagrams_differ() -> None:
    assert compute_sid("csv", {"tag": "TI101.PV"}) != compute_sid("csv", {"tag": "TI110.PV"})
    assert compute_sid("csv", {"ab": 1, "ba": 2}) != compute_sid("csv", {"ab": 2, "ba": 1})
    assert compute_sid("csv", {"tag": "x"}) != compute_sid("http", {"tag": "x"})


@pytest.mark.parametrize("name", ["orders", "sensor-reading", "a", "a_b-9"])
def test_good_topics(name: str) -> None:
    assert validate_topic(name) == name


@pytest.mark.parametrize("name", ["", "Orders", "9lives", "a.b", "a b", "x" * 64, "é"])
def test_bad_topics_say_why(name: str) -> None:
    with pytest.raises(InvalidName, match="invalid topic name"):
        validate_topic(name)


def test_subject_and_pattern_errors_name_the_segment() -> None:
    assert validate_subject("plant1.line3") == "plant1.line3"
    with pytest.raises(InvalidName, match="segment 1 ''"):
        validate_subject("plant1..x")
    with pytest.raises(InvalidName, match="segment 0 'a\\*'"):
        validate_pattern("a*.b")
    assert validate_pattern("orders.*.#") == "orders.*.#"
    assert validate_unitop_name("Pump-101") == "Pump-101"
    with pytest.raises(InvalidName):
        validate_unitop_name("-pump")


def test_envelope_round_trip_and_errors() -> None:
    ev = CloudEvent(
        id="1",
        source="/hub",
        type="orders",
        subject="eu.x",
        time="2026-01-01T00:00:00Z",
        dataschema="/topics/orders/schemas/1",
        data={"a": 1},
    )
    dumped = ev.model_dump(mode="json")
    assert dumped["time"] == "2026-01-01T00:00:00.000000Z"
    assert ev.routing_key == "orders.eu.x"
    assert CloudEvent.model_validate(dumped) == ev
    with pytest.raises(ValidationError) as err:
        CloudEvent.model_validate({**dumped, "type": "Bad Topic", "traceparent": "nope"})
    locs = {e["loc"][0] for e in err.value.errors()}
    assert locs == {"type", "traceparent"}
    with pytest.raises(ValidationError, match="segment"):
        EventIn.model_validate({"data": 1, "subject": "a..b"})


def test_sample_batch_requires_increasing_times() -> None:
    ok = SampleBatch.model_validate(
        {
            "sid": "s",
            "source": "sim",
            "samples": [{"t": "2026-01-01T00:00:00Z", "v": 1}, {"t": "2026-01-01T00:00:01Z", "v": True}],
        }
    )
    assert ok.samples[1].v is True  # a bool stays a bool
    with pytest.raises(ValidationError, match=r"samples\[1\].t is not after"):
        SampleBatch.model_validate(
            {
                "sid": "s",
                "source": "sim",
                "samples": [{"t": "2026-01-01T00:00:01Z", "v": 1}, {"t": "2026-01-01T00:00:01Z", "v": 2}],
            }
        )


def test_unitop_validation() -> None:
    u = Unitop.model_validate({"name": "pump-101", "items": {"flow": {"source": "simulator", "params": {"seed": 1}}}})
    assert u.items["flow"].sid == compute_sid("simulator", {"seed": 1})
    with pytest.raises(ValidationError, match="item name"):
        Unitop.model_validate({"name": "p", "items": {"bad name": {"source": "simulator"}}})
